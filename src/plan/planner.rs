//! The planner: Create, Update and Delete of one pending export (`ldap-export.md` §3, §4).

use std::collections::HashMap;

use super::dn::{Dn, dn_key, same_text_ignoring_case};
use super::encode::encode_value;
use super::input::{
    PlanInput, container_chain, current_dn, member_attribute, object_class, requires_placeholder,
};
use super::modify::{Group, Request, Staged, chunk, consolidate};
use super::scope::ManagedScope;
use super::{
    AnchorEncoding, AnchorRead, Attribute, ExportPlan, KnownAnchor, ModKind, Modification,
    ModifyPurpose, Operation, PlanFailure, PlannedStep,
};
use crate::config::{DeleteBehaviour, Dialect, ExportSettings};
use crate::model::{AttributeDefinition, AttributeValueChange, PendingExportChangeType};

/// Plans exports for one connected system: its settings, dialect and managed scope, parsed once.
#[derive(Debug, Clone)]
pub struct Planner {
    settings: ExportSettings,
    dialect: Dialect,
    scope: ManagedScope,
    batch: usize,
}

/// A change resolved against its attribute definition.
struct Resolved<'a> {
    change: &'a AttributeValueChange,
    attribute: &'a AttributeDefinition,
}

impl Planner {
    /// A planner for the given settings and dialect.
    pub fn new(settings: &ExportSettings, dialect: Dialect) -> Self {
        Self {
            scope: ManagedScope::new(&settings.managed_scope),
            batch: settings.effective_modify_batch_size(),
            settings: settings.clone(),
            dialect,
        }
    }

    /// The dialect plans are made for.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The modify batch size in force (JIM's clamp to 10..5000 applied).
    pub fn modify_batch_size(&self) -> usize {
        self.batch
    }

    /// Plans one export, or says why it cannot be sent.
    pub fn plan(&self, input: &PlanInput<'_>) -> Result<ExportPlan, PlanFailure> {
        let by_id: HashMap<i32, &AttributeDefinition> =
            input.attributes.iter().map(|a| (a.id, a)).collect();
        let mut unsent = Vec::new();
        let mut warnings = Vec::new();
        let mut writable = Vec::new();
        for change in input.export.writable_changes() {
            match by_id.get(&change.attribute_id) {
                Some(attribute) => writable.push(Resolved { change, attribute }),
                None => {
                    unsent.push(change.id);
                    warnings.push(format!(
                        "change {} names attribute {} which has no definition; nothing sent",
                        change.id, change.attribute_id
                    ));
                }
            }
        }
        let mut plan = match input.export.change_type {
            PendingExportChangeType::Create => self.plan_create(input, &writable)?,
            PendingExportChangeType::Update => self.plan_update(input, &writable, &by_id)?,
            PendingExportChangeType::Delete => self.plan_delete(input, &writable)?,
        };
        plan.unsent_change_ids.extend(unsent);
        plan.warnings.extend(warnings);
        Ok(plan)
    }

    /// The DN an Update renames or moves its object to, and the DN it has now, when [`Planner::plan`]
    /// would send a ModifyDN for it; `None` for anything else (a DN change differing only in case does
    /// not rename; a new DN the plan refuses, invalid or outside the managed scope, never reaches the
    /// directory). The run uses it to hold back writes that name the object until it is where they
    /// say (see `engine::renames`), without planning the export twice.
    pub fn rename<'a>(&self, input: &PlanInput<'a>) -> Option<(&'a str, &'a str)> {
        if input.export.change_type != PendingExportChangeType::Update {
            return None;
        }
        let by_id: HashMap<i32, &AttributeDefinition> =
            input.attributes.iter().map(|a| (a.id, a)).collect();
        let changes: Vec<Resolved<'a>> = input
            .export
            .writable_changes()
            .filter_map(|change| {
                let attribute = by_id.get(&change.attribute_id)?;
                Some(Resolved { change, attribute })
            })
            .collect();
        let staged = staged_dn(input, &changes, &by_id);
        let (current, new) = (staged.current?, staged.new?);
        self.checked_dn(input, new, "new").ok()?;
        Some((current, new))
    }

    /// True when an Update staging `to` as the DN of an object now at `from` would rename or move it,
    /// as [`Planner::rename`] decides from the export: the DNs differ other than in case, and the plan
    /// accepts the new DN (valid, inside the managed scope). Used for a rename outside the run, known
    /// by its two DNs alone; a container created by the run it would be in counts as outside here.
    pub fn moves_to(&self, from: &str, to: &str) -> bool {
        !to.trim().is_empty()
            && !same_text_ignoring_case(to, from)
            && Dn::parse(to).is_ok_and(|dn| dn.has_valid_values())
            && self.scope.permits(to, &[])
    }

    fn check_scope(&self, input: &PlanInput<'_>, dn: &str) -> Result<(), PlanFailure> {
        if self.scope.permits(dn, input.created_containers) {
            Ok(())
        } else {
            Err(PlanFailure::outside_scope(format!(
                "'{dn}' is outside the containers this connected system manages; nothing was written"
            )))
        }
    }

    /// Scope first (as JIM's guard runs before anything else), then the DN's own validity.
    fn checked_dn(&self, input: &PlanInput<'_>, text: &str, what: &str) -> Result<Dn, PlanFailure> {
        let parsed = Dn::parse(text);
        if parsed.is_ok() {
            self.check_scope(input, text)?;
        }
        match parsed {
            Ok(dn) if dn.has_valid_values() => Ok(dn),
            Ok(_) => Err(PlanFailure::invalid_dn(format!(
                "{what} Distinguished Name '{text}' contains empty RDN components."
            ))),
            Err(e) => Err(PlanFailure::invalid_dn(format!(
                "{what} Distinguished Name '{text}' is invalid: {}",
                e.reason
            ))),
        }
    }

    fn plan_create(
        &self,
        input: &PlanInput<'_>,
        changes: &[Resolved<'_>],
    ) -> Result<ExportPlan, PlanFailure> {
        let dn_change = changes.iter().find(|r| r.attribute.is_distinguished_name());
        let dn_text = dn_change
            .and_then(|r| r.change.value.string.as_deref())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                PlanFailure::general(format!(
                    "Cannot create object: Distinguished Name (DN) could not be determined for pending export {}",
                    input.export.id
                ))
            })?
            .to_string();
        let dn = self.checked_dn(input, &dn_text, "Cannot create object:")?;

        let mut steps = Vec::new();
        if self.settings.create_containers_as_needed {
            steps.extend(self.container_steps(&dn.parent()));
        }

        let object_class = object_class(input);
        let mut add_ids = Vec::new();
        let mut unsent = Vec::new();
        let mut warnings = Vec::new();
        if let Some(r) = dn_change {
            add_ids.push(r.change.id);
        }
        // Group the values per attribute (case-insensitive, first appearance); JIM ignores the
        // attribute change type on Create and adds every value (§11.16, kept).
        let mut groups: Vec<Group> = Vec::new();
        for r in changes {
            let name = r.attribute.name.as_str();
            if r.attribute.is_distinguished_name() {
                if Some(r.change.id) != dn_change.map(|d| d.change.id) {
                    unsent.push(r.change.id);
                }
                continue;
            }
            if name.eq_ignore_ascii_case("objectClass") {
                add_ids.push(r.change.id);
                continue;
            }
            let Some(value) = encode_value(&r.change.value) else {
                unsent.push(r.change.id);
                warnings.push(format!(
                    "change {} has no value for '{name}'; not sent on create",
                    r.change.id
                ));
                continue;
            };
            let key = name.to_ascii_lowercase();
            let i = match groups.iter().position(|g| g.key == key) {
                Some(i) => i,
                None => {
                    groups.push(Group::new(name, ModKind::Add));
                    groups.len() - 1
                }
            };
            groups[i].push_value(value, Some(r.change.id));
        }

        let mut placeholder = false;
        if let Some(class) = object_class.as_deref()
            && requires_placeholder(self.dialect, class)
        {
            let member = member_attribute(class);
            let has_members = groups
                .iter()
                .any(|g| g.key.eq_ignore_ascii_case(member) && !g.values.is_empty());
            if !has_members {
                groups.retain(|g| !g.key.eq_ignore_ascii_case(member));
                groups.push(Group::placeholder(
                    member,
                    ModKind::Add,
                    &self.settings.placeholder_member_dn,
                ));
                placeholder = true;
            }
        }

        let mut attributes = Vec::new();
        if let Some(class) = object_class.as_deref().filter(|c| !c.is_empty()) {
            attributes.push(Attribute::text("objectClass", &[class]));
        }
        let mut overflow = Vec::new();
        for g in groups {
            let values = g.values.into_vec();
            let mut chunks = values.chunks(self.batch);
            if let Some(first) = chunks.next() {
                attributes.push(Attribute {
                    name: g.attribute.clone(),
                    values: first.iter().map(|(v, _)| v.clone()).collect(),
                });
                add_ids.extend(first.iter().flat_map(|(_, ids)| ids.iter().copied()));
            }
            for c in chunks {
                overflow.push(PlannedStep {
                    operation: Operation::Modify {
                        dn: dn_text.clone(),
                        modifications: vec![Modification {
                            kind: ModKind::Add,
                            attribute: g.attribute.clone(),
                            values: c.iter().map(|(v, _)| v.clone()).collect(),
                            placeholder: false,
                        }],
                        purpose: ModifyPurpose::Overflow,
                    },
                    change_ids: c.iter().flat_map(|(_, ids)| ids.iter().copied()).collect(),
                });
            }
        }
        steps.push(PlannedStep {
            operation: Operation::Add {
                dn: dn_text.clone(),
                attributes,
                placeholder,
            },
            change_ids: add_ids,
        });
        steps.extend(overflow);

        Ok(ExportPlan {
            export_id: input.export.id,
            change_type: PendingExportChangeType::Create,
            dn: dn_text.clone(),
            previous_dn: None,
            steps,
            anchor: Some(self.anchor(input)),
            known_anchor: None,
            unsent_change_ids: unsent,
            substitutions: Vec::new(),
            warnings,
        })
    }

    fn plan_update(
        &self,
        input: &PlanInput<'_>,
        changes: &[Resolved<'_>],
        by_id: &HashMap<i32, &AttributeDefinition>,
    ) -> Result<ExportPlan, PlanFailure> {
        let StagedDn {
            change: dn_change,
            current,
            new: new_dn,
        } = staged_dn(input, changes, by_id);
        let current = current
            .ok_or_else(|| {
                PlanFailure::general(format!(
                    "Cannot update object: Distinguished Name (DN) could not be determined for pending export {}",
                    input.export.id
                ))
            })?
            .to_string();

        let mut steps = Vec::new();
        let mut unsent = Vec::new();
        let working = match new_dn {
            Some(new_text) => {
                let new = self.checked_dn(input, new_text, "Cannot rename object: new")?;
                let old_parent = Dn::parse(&current).map(|d| d.parent().key()).ok();
                if self.settings.create_containers_as_needed
                    && old_parent.as_deref() != Some(new.parent().key().as_str())
                {
                    steps.extend(self.container_steps(&new.parent()));
                }
                let parent = new.parent_text();
                steps.push(PlannedStep {
                    operation: Operation::ModifyDn {
                        dn: current.clone(),
                        new_rdn: new.leaf_text().to_string(),
                        delete_old_rdn: true,
                        new_superior: (!parent.is_empty()).then(|| parent.to_string()),
                        new_dn: new_text.to_string(),
                    },
                    change_ids: dn_change.map(|r| r.change.id).into_iter().collect(),
                });
                new_text.to_string()
            }
            None => {
                self.check_scope(input, &current)?;
                unsent.extend(dn_change.map(|r| r.change.id));
                current.clone()
            }
        };

        // Skip the leaf RDN's attribute (the rename sets it); without a parseable DN, JIM's fallback
        // list. Every DN change is skipped too.
        let rdn_type = Dn::parse(&working)
            .ok()
            .and_then(|d| d.leaf().map(|r| r.attr_type().to_string()));
        let is_rdn_attribute = |name: &str| match &rdn_type {
            Some(t) => name.eq_ignore_ascii_case(t),
            None => ["cn", "ou", "dc", "uid"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n)),
        };
        let mut staged = Vec::with_capacity(changes.len());
        for r in changes {
            if r.attribute.is_distinguished_name() {
                if Some(r.change.id) != dn_change.map(|d| d.change.id) {
                    unsent.push(r.change.id);
                }
                continue;
            }
            if is_rdn_attribute(&r.attribute.name) {
                unsent.push(r.change.id);
                continue;
            }
            staged.push(Staged {
                id: r.change.id,
                attribute: &r.attribute.name,
                kind: r.change.change_type,
                value: encode_value(&r.change.value),
            });
        }
        let mut consolidated = consolidate(&staged);
        unsent.append(&mut consolidated.unsent);

        let mut remove_placeholder = None;
        if let Some(class) = object_class(input)
            && requires_placeholder(self.dialect, &class)
        {
            remove_placeholder = self.apply_placeholder(
                input,
                by_id,
                member_attribute(&class),
                &mut consolidated.groups,
            );
        }

        for Request {
            modifications,
            change_ids,
        } in chunk(consolidated.groups, self.batch)
        {
            steps.push(PlannedStep {
                operation: Operation::Modify {
                    dn: working.clone(),
                    modifications,
                    purpose: ModifyPurpose::Update,
                },
                change_ids,
            });
        }
        if let Some(m) = remove_placeholder {
            steps.push(PlannedStep {
                operation: Operation::Modify {
                    dn: working.clone(),
                    modifications: vec![m],
                    purpose: ModifyPurpose::RemovePlaceholder,
                },
                change_ids: Vec::new(),
            });
        }

        Ok(ExportPlan {
            export_id: input.export.id,
            change_type: PendingExportChangeType::Update,
            previous_dn: new_dn.map(|_| current.clone()),
            dn: working,
            steps,
            anchor: None,
            known_anchor: self.known_anchor(input),
            unsent_change_ids: unsent,
            substitutions: consolidated.substitutions,
            warnings: consolidated.warnings,
        })
    }

    /// Keeps a `groupOfNames`-style group from losing its last member (§3.5, with §11.3's fixes):
    /// a clear or a replace left with no values becomes a replace with the placeholder; removals that
    /// would leave no member add the placeholder in the first request; adding real members to a group
    /// that (as far as JIM knows) has none removes the placeholder afterwards, tolerating its absence.
    fn apply_placeholder(
        &self,
        input: &PlanInput<'_>,
        by_id: &HashMap<i32, &AttributeDefinition>,
        member: &str,
        groups: &mut Vec<Group>,
    ) -> Option<Modification> {
        let placeholder = self.settings.placeholder_member_dn.as_str();
        let placeholder_key = dn_key(placeholder);
        let (mut real_current, mut holds_placeholder) = (0usize, false);
        if let Some(cso) = input.cso {
            for v in &cso.values {
                let is_member = by_id
                    .get(&v.attribute_id)
                    .is_some_and(|a| a.name.eq_ignore_ascii_case(member));
                if !is_member {
                    continue;
                }
                let text = v
                    .unresolved_reference_value
                    .as_deref()
                    .or(v.value.string.as_deref());
                // JIM counts every value of the member attribute (ldap-export §3.5): a row that
                // names its member by id alone is a member too.
                match text {
                    Some(t) if dn_key(t) == placeholder_key => holds_placeholder = true,
                    _ => real_current += 1,
                }
            }
        }
        let key = member.to_ascii_lowercase();
        if let Some(g) = groups
            .iter_mut()
            .find(|g| g.key == key && g.kind == ModKind::Replace)
        {
            if g.values.is_empty() {
                g.push_placeholder(placeholder);
            }
            return None;
        }
        let count = |kind: ModKind| {
            groups
                .iter()
                .filter(|g| g.key == key && g.kind == kind)
                .map(|g| g.values.len())
                .sum::<usize>()
        };
        let (adds, removes) = (count(ModKind::Add), count(ModKind::Delete));
        if removes > 0 && !holds_placeholder && real_current + adds <= removes {
            // Lands in the first request, before the deletes, so the group is never empty.
            groups.insert(0, Group::placeholder(member, ModKind::Add, placeholder));
            return None;
        }
        if adds > 0 && (real_current == 0 || holds_placeholder) {
            return Some(Modification {
                kind: ModKind::Delete,
                attribute: member.to_string(),
                values: vec![placeholder.as_bytes().to_vec()],
                placeholder: true,
            });
        }
        None
    }

    fn plan_delete(
        &self,
        input: &PlanInput<'_>,
        changes: &[Resolved<'_>],
    ) -> Result<ExportPlan, PlanFailure> {
        let staged_dn = changes
            .iter()
            .find(|r| r.attribute.is_distinguished_name())
            .and_then(|r| r.change.value.string.as_deref())
            .filter(|s| !s.trim().is_empty());
        let by_id: HashMap<i32, &AttributeDefinition> =
            input.attributes.iter().map(|a| (a.id, a)).collect();
        let dn_text = current_dn(input, &by_id)
            .or(staged_dn)
            .ok_or_else(|| {
                PlanFailure::general(format!(
                    "Cannot delete object: Distinguished Name (DN) could not be determined for pending export {}",
                    input.export.id
                ))
            })?
            .to_string();
        self.checked_dn(input, &dn_text, "Cannot delete object:")?;
        let operation = match self.settings.effective_delete_behaviour() {
            DeleteBehaviour::Delete => Operation::Delete {
                dn: dn_text.clone(),
            },
            DeleteBehaviour::Disable
                if self
                    .settings
                    .disable_attribute
                    .eq_ignore_ascii_case("userAccountControl") =>
            {
                Operation::DisableAccount {
                    dn: dn_text.clone(),
                }
            }
            DeleteBehaviour::Disable => Operation::Modify {
                dn: dn_text.clone(),
                modifications: vec![Modification {
                    kind: ModKind::Replace,
                    attribute: self.settings.disable_attribute.clone(),
                    values: vec![b"TRUE".to_vec()],
                    placeholder: false,
                }],
                purpose: ModifyPurpose::Disable,
            },
        };
        Ok(ExportPlan {
            export_id: input.export.id,
            change_type: PendingExportChangeType::Delete,
            dn: dn_text,
            previous_dn: None,
            steps: vec![PlannedStep {
                operation,
                change_ids: Vec::new(),
            }],
            anchor: None,
            known_anchor: self.known_anchor(input),
            unsent_change_ids: changes.iter().map(|r| r.change.id).collect(),
            substitutions: Vec::new(),
            warnings: Vec::new(),
        })
    }

    fn container_steps(&self, parent: &Dn) -> Vec<PlannedStep> {
        container_chain(parent, self.dialect)
            .into_iter()
            .map(|spec| PlannedStep {
                operation: Operation::EnsureContainer(spec),
                change_ids: Vec::new(),
            })
            .collect()
    }

    /// The anchor to read back: the attribute flagged `IsExternalId`, else the dialect's usual one.
    /// The CSO's primary anchor, when it has one the directory can be asked for.
    fn known_anchor(&self, input: &PlanInput<'_>) -> Option<KnownAnchor> {
        let cso = input.cso?;
        let value = cso
            .values_of(cso.external_id_attribute_id)
            .find_map(|v| v.value.reference_string().filter(|s| !s.trim().is_empty()))?;
        let read = self.anchor(input);
        (read.encoding != AnchorEncoding::Dn).then_some(KnownAnchor { read, value })
    }

    fn anchor(&self, input: &PlanInput<'_>) -> AnchorRead {
        let flagged = input
            .attributes
            .iter()
            .find(|a| a.is_external_id && input.cso.is_none_or(|c| c.type_id == a.object_type_id))
            .or_else(|| input.attributes.iter().find(|a| a.is_external_id));
        let attribute = flagged.map(|a| a.name.clone()).unwrap_or_else(|| {
            match self.dialect {
                Dialect::ActiveDirectory | Dialect::SambaAd => "objectGUID",
                _ => "entryUUID",
            }
            .to_string()
        });
        let encoding = if attribute.eq_ignore_ascii_case("objectGUID") {
            AnchorEncoding::MicrosoftGuid
        } else if attribute.eq_ignore_ascii_case("distinguishedName") {
            AnchorEncoding::Dn
        } else {
            AnchorEncoding::Text
        };
        AnchorRead {
            attribute,
            encoding,
        }
    }
}

/// An Update's DN change as staged: the change, the object's DN now, and the DN it moves to.
struct StagedDn<'c, 'a> {
    /// The change of the DN attribute, if the export has one.
    change: Option<&'c Resolved<'a>>,
    /// The object's current DN (the staged one when the CSO holds none).
    current: Option<&'a str>,
    /// The staged DN when it renames: it differs from the current one other than in case (§11.14,
    /// kept: a DN differing only in case does not rename).
    new: Option<&'a str>,
}

fn staged_dn<'c, 'a>(
    input: &PlanInput<'a>,
    changes: &'c [Resolved<'a>],
    by_id: &HashMap<i32, &AttributeDefinition>,
) -> StagedDn<'c, 'a> {
    let change = changes.iter().find(|r| r.attribute.is_distinguished_name());
    let staged = change
        .and_then(|r| r.change.value.string.as_deref())
        .filter(|s| !s.trim().is_empty());
    let current = current_dn(input, by_id).or(staged);
    let new = staged.filter(|n| current.is_some_and(|c| !same_text_ignoring_case(n, c)));
    StagedDn {
        change,
        current,
        new,
    }
}

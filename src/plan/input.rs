//! The export as the planner sees it ([`PlanInput`]), and what the planner reads off it and off the
//! directory's conventions: the object's current DN and class, whether a group class needs a
//! placeholder member and which attribute holds its members, and the containers above a DN.

use std::collections::HashMap;

use super::dn::Dn;
use super::{Attribute, ContainerSpec};
use crate::config::Dialect;
use crate::model::{AttributeDefinition, ConnectedSystemObject, ObjectType, PendingExport};

/// Object classes whose member attribute is mandatory, so an empty group needs a placeholder member
/// on directories other than AD (`MUST_MEMBER_OBJECT_CLASSES`).
const MUST_MEMBER_CLASSES: &[&str] = &["groupOfNames", "groupOfUniqueNames"];

/// What the planner needs to know about one pending export.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The export with its attribute changes (only the writable ones are planned).
    pub export: &'a PendingExport,
    /// The object type's name (the `objectClass` fallback), if known.
    pub object_type_name: Option<&'a str>,
    /// The attribute definitions the changes and the CSO's values refer to (normally the object
    /// type's attributes); a change whose attribute is not here is not sent.
    pub attributes: &'a [AttributeDefinition],
    /// The target CSO with its current values (current DN, current members), if there is one.
    pub cso: Option<&'a ConnectedSystemObject>,
    /// Containers created earlier in this run: JIM counts DNs beneath them as in scope.
    pub created_containers: &'a [String],
}

impl<'a> PlanInput<'a> {
    /// An input from an export, its object type and its CSO.
    pub fn new(
        export: &'a PendingExport,
        object_type: &'a ObjectType,
        cso: Option<&'a ConnectedSystemObject>,
    ) -> Self {
        Self {
            export,
            object_type_name: Some(&object_type.name),
            attributes: &object_type.attributes,
            cso,
            created_containers: &[],
        }
    }
}

/// The CSO's current DN: the `StringValue` of its secondary-anchor attribute, or of the attribute
/// named `distinguishedName` when the CSO does not say which attribute that is.
pub(super) fn current_dn<'a>(
    input: &PlanInput<'a>,
    by_id: &HashMap<i32, &AttributeDefinition>,
) -> Option<&'a str> {
    let cso = input.cso?;
    cso.current_dn()
        .or_else(|| {
            cso.values
                .iter()
                .filter(|v| {
                    by_id
                        .get(&v.attribute_id)
                        .is_some_and(|a| a.is_distinguished_name() || a.is_secondary_external_id)
                })
                .find_map(|v| v.value.string.as_deref())
        })
        .filter(|s| !s.trim().is_empty())
}

/// JIM's `GetObjectClass`: the `StringValue` of an `objectClass` change, else the object type's name.
pub(super) fn object_class(input: &PlanInput<'_>) -> Option<String> {
    let names: HashMap<i32, &str> = input
        .attributes
        .iter()
        .map(|a| (a.id, a.name.as_str()))
        .collect();
    input
        .export
        .attribute_changes
        .iter()
        .filter(|c| {
            names
                .get(&c.attribute_id)
                .is_some_and(|n| n.eq_ignore_ascii_case("objectClass"))
        })
        .find_map(|c| c.value.string.clone().filter(|s| !s.is_empty()))
        .or_else(|| input.object_type_name.map(str::to_string))
}

/// True when groups of `object_class` need a placeholder member on `dialect` (not AD, not Samba AD;
/// `groupOfNames` or `groupOfUniqueNames`, case-insensitive).
pub fn requires_placeholder(dialect: Dialect, object_class: &str) -> bool {
    !matches!(dialect, Dialect::ActiveDirectory | Dialect::SambaAd)
        && MUST_MEMBER_CLASSES
            .iter()
            .any(|c| c.eq_ignore_ascii_case(object_class))
}

/// The member attribute of a group class: `uniqueMember` for `groupOfUniqueNames`, else `member`.
pub fn member_attribute(object_class: &str) -> &'static str {
    if object_class.eq_ignore_ascii_case("groupOfUniqueNames") {
        "uniqueMember"
    } else {
        "member"
    }
}

/// The containers to make sure of for `parent`, root first (JIM's `BuildContainerChain`): walking up
/// from `parent`, `OU=` and `CN=` RDNs are kept, other types skipped, and the walk stops at the first
/// `DC=`. Each container's DN is the staged text from its RDN upwards; its naming values are
/// unescaped (JIM sends the escaped text, §11.10).
pub fn container_chain(parent: &Dn, dialect: Dialect) -> Vec<ContainerSpec> {
    let mut chain = Vec::new();
    for (i, rdn) in parent.rdns().iter().enumerate() {
        let t = rdn.attr_type();
        if t.eq_ignore_ascii_case("dc") {
            break;
        }
        let object_class = if t.eq_ignore_ascii_case("ou") {
            "organizationalUnit"
        } else if t.eq_ignore_ascii_case("cn") {
            match dialect {
                Dialect::ActiveDirectory | Dialect::SambaAd => "container",
                Dialect::Ds389 => "nsContainer",
                // `container` is AD-only; organizationalRole is the stock-schema structural class
                // named by cn alone.
                Dialect::OpenLdap | Dialect::Generic => "organizationalRole",
            }
        } else {
            continue;
        };
        let mut attributes: Vec<Attribute> = Vec::new();
        for ava in &rdn.avas {
            match attributes
                .iter_mut()
                .find(|a| a.name.eq_ignore_ascii_case(&ava.attr_type))
            {
                Some(a) => a.values.push(ava.value.as_bytes().to_vec()),
                None => attributes.push(Attribute {
                    name: ava.attr_type.clone(),
                    values: vec![ava.value.as_bytes().to_vec()],
                }),
            }
        }
        chain.push(ContainerSpec {
            dn: parent.suffix_text(i).to_string(),
            object_class: object_class.to_string(),
            attributes,
        });
    }
    chain.reverse();
    chain
}

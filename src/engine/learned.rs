//! In-flight limits an engine's runs learnt, by directory: JIM's worker keeps one engine and runs
//! exports to the same directories again and again, and a short run (a follow-up round of a few
//! hundred exports) would otherwise spend most of itself climbing from the dialect's start to where
//! the last run already was. The next run resumes there and adapts as always
//! ([`AdaptiveLimit::resume_at`](crate::directory::limit::AdaptiveLimit::resume_at)): the floor that
//! latency alone may lead to is still half the dialect's start.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::{Bind, DirectoryConfig};
use crate::directory::{Directory, DirectoryTuning};

/// The limits learnt so far, by directory (its URLs and the identity bound as: another account may
/// be held to other server limits). Never a secret in a key.
#[derive(Debug, Default)]
pub(crate) struct LearnedLimits {
    limits: Mutex<HashMap<String, u32>>,
}

impl LearnedLimits {
    /// The tuning a run's options ask for, resuming at the limit learnt for its directory (when its
    /// limit adapts).
    pub(crate) fn tuning(
        &self,
        config: &DirectoryConfig,
        tuning: DirectoryTuning,
    ) -> DirectoryTuning {
        let resume = self.lock().get(&key(config)).copied();
        DirectoryTuning {
            resume_in_flight: tuning.resume_in_flight.or(resume),
            ..tuning
        }
    }

    /// Keeps where the adaptive limit of a run that went through ended (a fixed limit teaches
    /// nothing). The caller leaves out a run that failed: a directory that went away cut its limit
    /// to the floor, which says nothing about the next run.
    pub(crate) fn remember(&self, config: &DirectoryConfig, directory: &Directory) {
        if directory.is_adaptive() {
            let limit = u32::try_from(directory.in_flight_limit()).unwrap_or(u32::MAX);
            self.lock().insert(key(config), limit);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(config: &DirectoryConfig) -> String {
    let identity = match &config.bind {
        Bind::Simple { dn, .. } => format!("simple:{}", dn.to_ascii_lowercase()),
        Bind::SaslExternal => "external".to_string(),
        Bind::Ntlm {
            username, domain, ..
        } => format!(
            "ntlm:{}\\{}",
            domain.as_deref().unwrap_or_default(),
            username
        )
        .to_ascii_lowercase(),
    };
    format!("{} as {identity}", config.urls.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_its_urls_and_the_identity_bound_as_never_the_password() {
        let a = DirectoryConfig::simple("ldap://dc1:389", "CN=Svc,DC=x", "one");
        let mut same = DirectoryConfig::simple("ldap://dc1:389", "cn=svc,dc=x", "two");
        assert_eq!(
            key(&a),
            key(&same),
            "DNs compare without case; passwords are not part"
        );
        assert!(!key(&a).contains("one"));
        same.urls.push("ldap://dc2:389".into());
        assert_ne!(key(&a), key(&same), "another list of servers");
        let other = DirectoryConfig::simple("ldap://dc1:389", "CN=Other,DC=x", "one");
        assert_ne!(key(&a), key(&other), "another account");
    }

    #[test]
    fn a_run_resumes_at_what_was_learnt_unless_told_where() {
        let learned = LearnedLimits::default();
        let config = DirectoryConfig::simple("ldap://dc1:389", "cn=svc", "pw");
        assert_eq!(
            learned
                .tuning(&config, DirectoryTuning::default())
                .resume_in_flight,
            None
        );
        learned.lock().insert(key(&config), 96);
        assert_eq!(
            learned
                .tuning(&config, DirectoryTuning::default())
                .resume_in_flight,
            Some(96)
        );
        let told = DirectoryTuning {
            resume_in_flight: Some(8),
            ..DirectoryTuning::default()
        };
        assert_eq!(learned.tuning(&config, told).resume_in_flight, Some(8));
    }
}

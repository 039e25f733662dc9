//! Opening one connection of the pool: the URLs tried in order (the first that answers wins), TLS
//! (ldaps or StartTLS, verified unless turned off), the bind, and why a failed attempt failed.

use std::sync::Mutex;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, StdStream};
use tokio::task::JoinSet;
use tracing::instrument::WithSubscriber;

use crate::config::{Bind, DirectoryConfig, DirectoryTlsMode};
use crate::directory::DirectoryError;
use crate::directory::classify::{rc, rc_name};

/// How to open one connection.
pub(crate) struct Connector {
    urls: Vec<String>,
    mode: DirectoryTlsMode,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    bind: Bind,
    connect_timeout: Duration,
    verify: bool,
}

impl Connector {
    pub fn new(config: &DirectoryConfig) -> Result<Self, DirectoryError> {
        if let Some(refusal) = config.password_refusal() {
            return Err(DirectoryError::Tls(format!("the bind {refusal}")));
        }
        let mode = config.effective_tls_mode();
        let tls = match mode {
            DirectoryTlsMode::None => None,
            _ => Some(crate::directory::tls::client_config(&config.tls)?),
        };
        Ok(Self {
            urls: config.urls.clone(),
            mode,
            tls,
            bind: config.bind.clone(),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            verify: config.tls.verify,
        })
    }

    /// Connects and binds to the first URL that answers, spawning the connection's driver into
    /// `drivers`. A refused bind stops at once (another server of the same directory would refuse it
    /// too); a server that does not answer moves on to the next URL.
    pub async fn connect(&self, drivers: &Mutex<JoinSet<()>>) -> Result<Ldap, DirectoryError> {
        let mut failures = Vec::new();
        for url in &self.urls {
            match tokio::time::timeout(self.connect_timeout, self.connect_url(url, drivers)).await {
                Ok(Ok(ldap)) => return Ok(ldap),
                Ok(Err(ConnectFailure::Fatal(e))) => return Err(e),
                Ok(Err(ConnectFailure::TryNext(msg))) => failures.push(format!("{url}: {msg}")),
                Err(_) => failures.push(format!(
                    "{url}: no answer within {} ms",
                    self.connect_timeout.as_millis()
                )),
            }
        }
        Err(DirectoryError::Connect(failures.join("; ")))
    }

    async fn connect_url(
        &self,
        url: &str,
        drivers: &Mutex<JoinSet<()>>,
    ) -> Result<Ldap, ConnectFailure> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.connect_timeout);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(cfg.clone());
            if !self.verify {
                // Lets ldap3 name a server given by IP address when verification is off.
                settings = settings.set_no_tls_verify(true);
            }
        }
        if self.mode == DirectoryTlsMode::StartTls {
            settings = settings.set_starttls(true);
        }
        if !self.verify && self.tls.is_some() {
            tracing::warn!(
                url,
                "TLS certificate verification is switched off for the directory (tls.verify = false)"
            );
        }
        if let Some(stream) = tcp_without_delay(url)
            .await
            .map_err(|e| classify_connect_error(url, e))?
        {
            settings = settings.set_std_stream(stream);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| classify_connect_error(url, e))?;
        {
            let mut set = drivers.lock().unwrap_or_else(|p| p.into_inner());
            set.spawn(
                async move {
                    if let Err(e) = conn.drive().await {
                        tracing::debug!(error = %e, "directory connection ended");
                    }
                }
                .with_current_subscriber(),
            );
        }
        ldap.with_timeout(self.connect_timeout);
        let (bound, who) = match &self.bind {
            Bind::Simple { dn, password } => (
                ldap.simple_bind(dn, password.expose()).await,
                format!("as '{dn}'"),
            ),
            Bind::SaslExternal => (
                ldap.sasl_external_bind().await,
                "with SASL EXTERNAL".to_string(),
            ),
            Bind::Ntlm { password, .. } => {
                // Checked here too, not only in validation: ldap3 panics on a name its NTLM
                // implementation cannot parse.
                let name = match self.bind.ntlm_name().unwrap_or(Err("not an NTLM bind")) {
                    Ok(name) => name,
                    Err(reason) => {
                        return Err(ConnectFailure::Fatal(DirectoryError::Bind(format!(
                            "NTLM user name: {reason}"
                        ))));
                    }
                };
                (
                    ldap.sasl_ntlm_bind(&name, password.expose()).await,
                    format!("as '{name}' with NTLM"),
                )
            }
        };
        match bound {
            Ok(r) if r.rc == rc::SUCCESS => Ok(ldap),
            Ok(r) if matches!(r.rc, rc::BUSY | rc::UNAVAILABLE) => Err(ConnectFailure::TryNext(
                format!("bind {who} refused: {} ({})", rc_name(r.rc), r.rc),
            )),
            Ok(r) => Err(ConnectFailure::Fatal(DirectoryError::Bind(format!(
                "bind {who} to {url} failed: {} ({}){}{}",
                rc_name(r.rc),
                r.rc,
                if r.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.text)
                },
                // 8: strongerAuthRequired.
                if r.rc == 8 && matches!(self.bind, Bind::Ntlm { .. }) {
                    " (this NTLM bind is neither signed nor sealed: use it over TLS; a Samba DC \
                     also needs `ldap server require strong auth = allow_sasl_over_tls`)"
                } else {
                    ""
                }
            )))),
            Err(e) => Err(ConnectFailure::TryNext(format!("bind {who}: {e}"))),
        }
    }
}

/// Opens the TCP connection ldap3 would open for `url`, with Nagle's algorithm off (ldap3 leaves it
/// on). Every LDAP request is a small write of its own; with Nagle's algorithm a request written
/// while an earlier one is unacknowledged waits for that acknowledgement, and a server that delays
/// its acknowledgements (Linux up to 40 ms, Windows 200 ms) sends it with its answer, a round trip
/// later: measured through a 10 ms proxy, "Who am I?" sent beside the root DSE's read came back
/// 10 ms after it. `None` for `ldapi://` (a local socket) and for what ldap3 should judge itself (a
/// URL it cannot parse).
async fn tcp_without_delay(url: &str) -> Result<Option<StdStream>, LdapError> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(None);
    };
    let port = match parsed.scheme().to_ascii_lowercase().as_str() {
        "ldap" => parsed.port().unwrap_or(389),
        "ldaps" => parsed.port().unwrap_or(636),
        _ => return Ok(None),
    };
    // As ldap3 names it: an empty host is the local host; an IPv6 address keeps its brackets.
    let host = match parsed.host_str() {
        Some("") | None => "localhost",
        Some(host) => host,
    };
    let stream = tokio::net::TcpStream::connect(format!("{host}:{port}")).await?;
    stream.set_nodelay(true)?;
    Ok(Some(StdStream::Tcp(stream.into_std()?)))
}

enum ConnectFailure {
    TryNext(String),
    Fatal(DirectoryError),
}

fn classify_connect_error(url: &str, e: LdapError) -> ConnectFailure {
    match e {
        LdapError::Rustls { source } => ConnectFailure::Fatal(DirectoryError::Tls(format!(
            "TLS with {url} failed: {source}"
        ))),
        LdapError::DNSName { source } => ConnectFailure::Fatal(DirectoryError::Tls(format!(
            "TLS with {url} failed: {source}"
        ))),
        LdapError::Io { source } if is_tls_io_error(&source) => ConnectFailure::Fatal(
            DirectoryError::Tls(format!("TLS with {url} failed: {source}")),
        ),
        LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
            ConnectFailure::Fatal(DirectoryError::Connect(format!("{url}: {e}")))
        }
        other => ConnectFailure::TryNext(other.to_string()),
    }
}

/// tokio-rustls reports handshake failures (such as an unknown issuer) as I/O errors wrapping a
/// `rustls::Error`.
fn is_tls_io_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_engine_opens_network_connections_itself_with_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("ldap://127.0.0.1:{port}"),
            format!("LDAPS://127.0.0.1:{port}/"),
        ] {
            let Some(StdStream::Tcp(stream)) = tcp_without_delay(&url).await.unwrap() else {
                panic!("{url}: no TCP stream");
            };
            assert!(stream.nodelay().unwrap(), "{url}");
            assert_eq!(stream.peer_addr().unwrap().port(), port, "{url}");
        }
    }

    #[tokio::test]
    async fn local_sockets_and_unparsable_urls_are_left_to_ldap3() {
        for url in ["ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi", "ldap://[oops"] {
            assert!(tcp_without_delay(url).await.unwrap().is_none(), "{url}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_to_try_the_next_url_with() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let Err(e) = tcp_without_delay(&format!("ldap://127.0.0.1:{port}")).await else {
            panic!("nothing listens");
        };
        assert!(matches!(
            classify_connect_error("ldap://x", e),
            ConnectFailure::TryNext(_)
        ));
    }
}

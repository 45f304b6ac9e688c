//! `HEFFL_SMTP_URL`: `smtp://[user:password@]host[:port][?starttls=required]` (STARTTLS when the
//! server offers it, or only with it) or `smtps://…` (TLS from the first byte). The password
//! never reaches an error message or `Debug` output: both are written without the URL.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: STARTTLS if the server offers it, plain otherwise (a relay on localhost).
    StartTlsIfOffered,
    /// `smtp://…?starttls=required`: no message is sent over a connection without STARTTLS.
    StartTlsRequired,
    /// `smtps://`: TLS from the start (port 465).
    Tls,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Why a URL was refused, in words that quote nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmtpUrlError {
    #[error("HEFFL_SMTP_URL must start with smtp:// or smtps://")]
    Scheme,
    #[error("HEFFL_SMTP_URL has no host")]
    Host,
    #[error("HEFFL_SMTP_URL has a port that is not a number from 1 to 65535")]
    Port,
    #[error("HEFFL_SMTP_URL's only option is ?starttls=required (smtp:// only)")]
    Query,
    #[error("HEFFL_SMTP_URL has a user without a password, or a malformed %-escape in them")]
    Credentials,
    #[error("HEFFL_SMTP_URL has a path; it names a server, nothing more")]
    Path,
}

impl SmtpUrl {
    pub fn parse(text: &str) -> Result<SmtpUrl, SmtpUrlError> {
        let text = text.trim();
        let (mut security, rest, default_port) = if let Some(rest) = text.strip_prefix("smtp://") {
            (Security::StartTlsIfOffered, rest, 587)
        } else if let Some(rest) = text.strip_prefix("smtps://") {
            (Security::Tls, rest, 465)
        } else {
            return Err(SmtpUrlError::Scheme);
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        match query {
            None => {}
            Some("starttls=required") if security == Security::StartTlsIfOffered => {
                security = Security::StartTlsRequired;
            }
            Some(_) => return Err(SmtpUrlError::Query),
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // The user information may hold any character, '@' and '/' escaped; the last '@' ends it.
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, rest),
        };
        if authority.contains('/') {
            return Err(SmtpUrlError::Path);
        }
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').ok_or(SmtpUrlError::Credentials)?;
                let user = percent_decode(user).ok_or(SmtpUrlError::Credentials)?;
                let password = percent_decode(password).ok_or(SmtpUrlError::Credentials)?;
                if user.is_empty() {
                    return Err(SmtpUrlError::Credentials);
                }
                Some((user, password))
            }
        };
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(SmtpUrlError::Host);
        }
        let port = match port {
            None => default_port,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(SmtpUrlError::Port),
            },
        };
        Ok(SmtpUrl {
            security,
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the brackets are dropped.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), SmtpUrlError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(SmtpUrlError::Host)?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or(SmtpUrlError::Port),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_ports_and_starttls() {
        let plain = SmtpUrl::parse("smtp://mail.example.com").unwrap();
        assert_eq!(plain.security, Security::StartTlsIfOffered);
        assert_eq!((plain.host.as_str(), plain.port), ("mail.example.com", 587));
        assert_eq!(plain.credentials, None);
        let required = SmtpUrl::parse("smtp://127.0.0.1:2525?starttls=required").unwrap();
        assert_eq!(required.security, Security::StartTlsRequired);
        assert_eq!(required.port, 2525);
        let tls = SmtpUrl::parse("smtps://[::1]:4650/").unwrap();
        assert_eq!(tls.security, Security::Tls);
        assert_eq!((tls.host.as_str(), tls.port), ("::1", 4650));
        assert_eq!(SmtpUrl::parse("smtps://x").unwrap().port, 465);
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let url = SmtpUrl::parse("smtps://ap%40p:s3cr%2Ft@mail.example.com:465").unwrap();
        assert_eq!(
            url.credentials,
            Some(("ap@p".to_owned(), "s3cr/t".to_owned()))
        );
        assert!(!format!("{url:?}").contains("s3cr"));
    }

    #[test]
    fn refusals_quote_nothing_of_the_url() {
        for (text, error) in [
            ("http://x", SmtpUrlError::Scheme),
            ("smtp://", SmtpUrlError::Host),
            ("smtp://u:secret@host:99999", SmtpUrlError::Port),
            ("smtp://u:secret@host:0", SmtpUrlError::Port),
            ("smtps://host?starttls=required", SmtpUrlError::Query),
            ("smtp://host?tls=none", SmtpUrlError::Query),
            ("smtp://usersecret@host", SmtpUrlError::Credentials),
            ("smtp://u:se%zzcret@host", SmtpUrlError::Credentials),
            ("smtp://u:secret@host/path", SmtpUrlError::Path),
        ] {
            assert_eq!(SmtpUrl::parse(text), Err(error), "{text}");
            assert!(!error.to_string().contains("secret"));
        }
    }
}

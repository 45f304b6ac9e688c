//! Input rules shared by the handlers, as pure functions that collect every problem of a
//! request into `FieldIssue`s, so a client learns all of them from one 400.

use crate::error::{ApiError, FieldIssue};

#[derive(Default)]
pub struct Issues(Vec<FieldIssue>);

impl Issues {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldIssue::new(field, message));
    }

    /// `Ok(value)` when no issue was found, else the 400 listing them all.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Validation(self.0))
        }
    }

    /// A required, trimmed, single-line text of 1 to `max` characters.
    pub fn required_text(&mut self, field: &str, value: Option<&str>, max: usize) -> String {
        match value {
            None => {
                self.add(field, "is required");
                String::new()
            }
            Some(text) => self.text(field, text, max, true).unwrap_or_default(),
        }
    }

    /// An optional text: absent, `null` and blank all mean "no value".
    pub fn optional_text(
        &mut self,
        field: &str,
        value: Option<&str>,
        max: usize,
    ) -> Option<String> {
        value.and_then(|text| self.text(field, text, max, false))
    }

    fn text(&mut self, field: &str, text: &str, max: usize, required: bool) -> Option<String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            if required {
                self.add(field, "must not be blank");
            }
            return None;
        }
        let length = trimmed.chars().count();
        if length > max {
            self.add(
                field,
                format!("must be at most {max} characters (got {length})"),
            );
            return None;
        }
        if trimmed.chars().any(char::is_control) {
            self.add(field, "must not contain control characters or line breaks");
            return None;
        }
        Some(trimmed.to_owned())
    }

    pub fn email(&mut self, field: &str, value: Option<&str>, required: bool) -> Option<String> {
        let email = if required {
            Some(self.required_text(field, value, 254)).filter(|e| !e.is_empty())
        } else {
            self.optional_text(field, value, 254)
        }?;
        if is_plausible_email(&email) {
            Some(email)
        } else {
            self.add(field, "must be an email address such as jane@example.com");
            None
        }
    }

    pub fn password(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let Some(password) = value else {
            self.add(field, "is required");
            return None;
        };
        let length = password.chars().count();
        if length < crate::password::MIN_PASSWORD_LEN {
            self.add(
                field,
                format!(
                    "must be at least {} characters",
                    crate::password::MIN_PASSWORD_LEN
                ),
            );
            None
        } else if length > crate::password::MAX_PASSWORD_LEN {
            self.add(
                field,
                format!(
                    "must be at most {} characters",
                    crate::password::MAX_PASSWORD_LEN
                ),
            );
            None
        } else {
            Some(password.to_owned())
        }
    }

    pub fn phone(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let phone = self.optional_text(field, value, 32)?;
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let allowed = phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
        if allowed && digits >= 3 {
            Some(phone)
        } else {
            self.add(field, "must be a phone number such as +1234567890");
            None
        }
    }
}

/// Deliberately loose: one `@`, something on each side, a dot in the domain, no spaces. The
/// only real test of an address is mail reaching it.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
}

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: i64,
    pub size: i64,
}

impl Page {
    pub fn offset(self) -> i64 {
        (self.number - 1).saturating_mul(self.size)
    }
}

/// `pageNo` from 1 (default 1) and `pageSize` from 1 to 100 (default 20), from raw query text.
pub fn page(page_no: Option<&str>, page_size: Option<&str>) -> Result<Page, ApiError> {
    let mut issues = Issues::default();
    let mut parse = |field: &str, raw: Option<&str>, default: i64, max: i64| match raw {
        None => default,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                issues.add(field, format!("must be a whole number from 1 to {max}"));
                default
            }
        },
    };
    // A page number so large that its offset overflows can only be a mistake.
    let number = parse("pageNo", page_no, 1, 1_000_000_000);
    let size = parse("pageSize", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    issues.finish(Page { number, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_trims_and_bounds() {
        let mut issues = Issues::default();
        assert_eq!(
            issues.required_text("name", Some("  Data Sync "), 100),
            "Data Sync"
        );
        assert!(issues.finish(()).is_ok());

        let mut issues = Issues::default();
        issues.required_text("name", Some("   "), 100);
        issues.required_text("title", None, 100);
        issues.required_text("other", Some(&"x".repeat(101)), 100);
        issues.required_text("line", Some("a\nb"), 100);
        match issues.finish(()) {
            Err(ApiError::Validation(found)) => assert_eq!(found.len(), 4),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut issues = Issues::default();
        assert_eq!(
            issues
                .required_text("name", Some(&"é".repeat(100)), 100)
                .chars()
                .count(),
            100
        );
        assert!(issues.finish(()).is_ok());
    }

    #[test]
    fn emails() {
        assert!(is_plausible_email("jane@example.com"));
        assert!(!is_plausible_email("jane@localhost"));
        assert!(!is_plausible_email("jane example@x.com"));
        assert!(!is_plausible_email("@example.com"));
        assert!(!is_plausible_email("jane@@example.com"));
    }

    #[test]
    fn pages() {
        assert_eq!(
            page(None, None).ok(),
            Some(Page {
                number: 1,
                size: 20
            })
        );
        assert_eq!(
            page(Some("3"), Some("100")).ok(),
            Some(Page {
                number: 3,
                size: 100
            })
        );
        assert_eq!(page(Some("3"), Some("10")).map(Page::offset).ok(), Some(20));
        assert!(page(Some("0"), None).is_err());
        assert!(page(None, Some("101")).is_err());
        assert!(page(Some("1e3"), None).is_err());
        assert!(page(Some("99999999999999999999999"), None).is_err());
    }
}

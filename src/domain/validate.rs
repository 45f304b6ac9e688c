//! Input rules shared by the handlers, as pure functions that collect every problem of a
//! request into `FieldIssue`s, so a client learns all of them from one 400.

use crate::domain::permissions::Role;
use crate::error::{ApiError, FieldIssue};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

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
        if let Some(c) = first_hidden_char(trimmed) {
            self.add(
                field,
                format!(
                    "must not contain invisible, control or line-break characters (found U+{:04X})",
                    u32::from(c)
                ),
            );
            return None;
        }
        if !trimmed.chars().any(is_visible) {
            self.add(field, "must contain a visible character");
            return None;
        }
        Some(trimmed.to_owned())
    }

    /// A required role: `owner`, `admin`, `member` or `viewer`.
    /// A page size from the query: `default` when absent, else a whole number from 1 to `max`.
    pub fn page_limit(&mut self, value: Option<&str>, default: i64, max: i64) -> i64 {
        match value.map(|v| v.trim().parse::<i64>()) {
            None => default,
            Some(Ok(n)) if (1..=max).contains(&n) => n,
            Some(_) => {
                self.add("limit", format!("must be a whole number from 1 to {max}"));
                default
            }
        }
    }

    pub fn role(&mut self, field: &str, value: Option<&str>) -> Option<Role> {
        match value.map(Role::parse) {
            Some(Some(role)) => Some(role),
            Some(None) => {
                self.add(field, "must be one of owner, admin, member, viewer");
                None
            }
            None => {
                self.add(field, "is required");
                None
            }
        }
    }

    pub fn email(&mut self, field: &str, value: Option<&str>, required: bool) -> Option<String> {
        let email = if required {
            Some(self.required_text(field, value, 254)).filter(|e| !e.is_empty())
        } else {
            self.optional_text(field, value, 254)
        }?;
        if is_plain_email(&email) {
            Some(email)
        } else {
            self.add(
                field,
                "must be a plain address such as jane@example.com (no name, quotes or brackets)",
            );
            None
        }
    }

    pub fn password(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let Some(password) = value else {
            self.add(field, "is required");
            return None;
        };
        let length = password.chars().count();
        if length < crate::domain::password::MIN_PASSWORD_LEN {
            self.add(
                field,
                format!(
                    "must be at least {} characters",
                    crate::domain::password::MIN_PASSWORD_LEN
                ),
            );
            None
        } else if length > crate::domain::password::MAX_PASSWORD_LEN {
            self.add(
                field,
                format!(
                    "must be at most {} characters",
                    crate::domain::password::MAX_PASSWORD_LEN
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

/// Characters that change how text displays, or render as nothing, without showing themselves:
/// controls (Cc), formats (Cf: bidi overrides and isolates, zero-width characters, the
/// byte-order mark, soft hyphens, tags), the line and paragraph separators, every Unicode
/// `Default_Ignorable_Code_Point` (Hangul fillers such as U+3164, the combining grapheme joiner,
/// variation selectors, …) and the blank braille pattern U+2800, which no property marks but
/// which every font draws empty. Refused in every name, title, description and email, so a
/// value always looks like what it is; `first_hidden_char` lets a variation selector through
/// right after a visible character, where it picks an emoji's presentation ("❤️").
pub fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || c == BLANK_BRAILLE
        || DEFAULT_IGNORABLE.contains(c)
}

const BLANK_BRAILLE: char = '\u{2800}';

/// Unicode's own table (through ICU4X's compiled data), not a hand list that would miss the
/// next version's additions.
const DEFAULT_IGNORABLE: icu_properties::CodePointSetDataBorrowed<'static> =
    icu_properties::CodePointSetData::new::<icu_properties::props::DefaultIgnorableCodePoint>();

/// Selects a glyph's variant (text or emoji presentation, a CJK or Mongolian form).
pub fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{180B}'..='\u{180D}' | '\u{180F}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Shows something on its own: not white space, not invisible, and not a mark that only
/// decorates the character before it.
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !is_invisible(c)
        && !matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        )
}

/// The first character of `text` that is refused as invisible: any `is_invisible` character
/// except a variation selector that directly follows a character that is not itself refused.
pub fn first_hidden_char(text: &str) -> Option<char> {
    let mut previous_shown = false;
    for c in text.chars() {
        let invisible = is_invisible(c);
        if invisible && !(previous_shown && is_variation_selector(c)) {
            return Some(c);
        }
        previous_shown = !invisible && !c.is_whitespace();
    }
    None
}

/// A plain `local@domain`: no display name, quotes, comments or address literals. Letters of
/// any script are allowed (internationalized addresses); the only real test of an address is
/// mail reaching it. Callers trim first; comparison is case-insensitive (`normalize_email`).
pub fn is_plain_email(email: &str) -> bool {
    const LOCAL_SYMBOLS: &str = ".!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.chars().count())
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || LOCAL_SYMBOLS.contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.chars().count())
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    local_ok && domain_ok && email.chars().count() <= 254
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
        for good in [
            "jane@example.com",
            "Jane.Smith+crm@Example.co.uk",
            "o'brien@example.ie",
            "josé@exämple.de",
        ] {
            assert!(is_plain_email(good), "{good}");
        }
        for bad in [
            "jane@localhost",
            "jane example@x.com",
            "@example.com",
            "jane@@example.com",
            "Jane <jane@example.com>",
            "\"jane\"@example.com",
            "jane(x)@example.com",
            "jane@[127.0.0.1]",
            "jane@example..com",
            ".jane@example.com",
            "jane@-example.com",
            "adm\u{200b}@a.test",
            "jane,bob@example.com",
        ] {
            assert!(!is_plain_email(bad), "{bad}");
        }
    }

    #[test]
    fn the_reviewed_invisible_characters_are_refused() {
        for c in [
            '\u{202e}', '\u{200b}', '\u{200d}', '\u{feff}', '\u{00ad}', '\u{2066}', '\u{1b}',
            '\u{2028}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
            let mut issues = Issues::default();
            assert_eq!(
                issues.optional_text("name", Some(&format!("a{c}b")), 100),
                None
            );
            assert!(issues.finish(()).is_err());
        }
        for c in ['a', 'é', '→', '売', 'م', '☕', ' ', '\u{a0}'] {
            assert!(!is_invisible(c), "{c}");
        }
    }

    #[test]
    fn names_that_render_as_nothing_are_refused() {
        for name in [
            "\u{3164}",
            "\u{ffa0}",
            "\u{115f}",
            "\u{1160}",
            "\u{34f}",
            "\u{fe0f}",
            "\u{2800}",
            "a\u{3164}b",
            "\u{2800}\u{2800}",
            "\u{301}",
        ] {
            let mut issues = Issues::default();
            assert_eq!(
                issues.optional_text("name", Some(name), 100),
                None,
                "{name:?}"
            );
            assert!(issues.finish(()).is_err(), "{name:?}");
        }
        for name in [
            "❤\u{fe0f}",
            "I ❤\u{fe0f} Rust",
            "葛\u{e0100}",
            "e\u{301}",
            "Data Sync",
        ] {
            let mut issues = Issues::default();
            assert_eq!(
                issues.optional_text("name", Some(name), 100).as_deref(),
                Some(name),
                "{name:?}"
            );
        }
        // A selector after white space, or after another selector, selects nothing.
        for name in ["a \u{fe0f}", "❤\u{fe0f}\u{fe0f}"] {
            let mut issues = Issues::default();
            assert_eq!(
                issues.optional_text("name", Some(name), 100),
                None,
                "{name:?}"
            );
        }
    }

    /// Every character of Unicode's Default_Ignorable_Code_Point table, read from the table
    /// itself, plus the blank braille pattern.
    fn ignorable_chars() -> Vec<char> {
        DEFAULT_IGNORABLE
            .iter_ranges()
            .flat_map(|range| range.filter_map(char::from_u32))
            .chain([BLANK_BRAILLE])
            .collect()
    }

    #[test]
    fn the_table_holds_the_reviewed_fillers() {
        let table = ignorable_chars();
        assert!(table.len() > 4000, "{}", table.len());
        for c in [
            '\u{3164}', '\u{ffa0}', '\u{115f}', '\u{1160}', '\u{34f}', '\u{fe0f}', '\u{2800}',
        ] {
            assert!(table.contains(&c), "U+{:04X}", u32::from(c));
        }
    }

    use proptest::prelude::*;

    /// Any character of the categories the rule names, except whitespace (which trimming may
    /// remove from the ends, as it should).
    fn invisible_char() -> impl Strategy<Value = char> {
        any::<char>().prop_filter("Cc, Cf, Zl or Zp", |c| {
            is_invisible(*c) && !c.is_whitespace() && !is_variation_selector(*c)
        })
    }

    proptest! {
        #[test]
        fn text_with_an_invisible_character_is_refused(
            before in "\\PC{0,20}",
            c in invisible_char(),
            after in "\\PC{0,20}",
        ) {
            let text = format!("{before}{c}{after}");
            let mut issues = Issues::default();
            let required = issues.required_text("name", Some(&text), 100);
            prop_assert!(!required.chars().any(is_invisible));
            prop_assert!(issues.finish(()).is_err());
            let mut issues = Issues::default();
            let email = format!("{before}{c}@example.com");
            let accepted = issues.email("email", Some(&email), true);
            prop_assert!(accepted.is_none());
            prop_assert!(issues.finish(()).is_err());
        }

        #[test]
        fn an_ignorable_character_is_refused_unless_it_selects_a_variant(
            before in "\\PC{0,10}",
            c in proptest::sample::select(ignorable_chars()),
            after in "\\PC{0,10}",
        ) {
            // After a space: nothing to select a variant of.
            let text = format!("x{before} {c}{after}x");
            let mut issues = Issues::default();
            prop_assert!(issues.optional_text("name", Some(&text), 100).is_none());
            // After a visible character: only a variation selector passes.
            let text = format!("x{c}");
            let mut issues = Issues::default();
            let accepted = issues.optional_text("name", Some(&text), 100).is_some();
            prop_assert_eq!(accepted, is_variation_selector(c));
        }

        #[test]
        fn accepted_text_is_trimmed_visible_and_not_blank(text in any::<String>()) {
            let mut issues = Issues::default();
            if let Some(value) = issues.optional_text("name", Some(&text), 1000) {
                prop_assert_eq!(first_hidden_char(&value), None);
                prop_assert!(value.chars().any(is_visible));
                prop_assert!(!value.trim().is_empty());
                prop_assert_eq!(value.trim(), value.as_str());
            }
        }

        #[test]
        fn whitespace_only_is_blank(text in "[\\s\u{3000}\u{2003}\u{a0}]{0,10}") {
            let mut issues = Issues::default();
            let value = issues.required_text("name", Some(&text), 100);
            prop_assert_eq!(value, "");
            prop_assert!(issues.finish(()).is_err());
        }
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

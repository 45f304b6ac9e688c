//! The emails the server sends, as plain text with a simple HTML twin. Built from plain data so
//! that what a recipient reads is unit-tested without a server; every value from a person
//! (names, the workspace's name) is escaped in the HTML part.

use crate::domain::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What an invitation email says: who invited whom, to which workspace and role, the link, and
/// when it stops working.
pub struct InvitationEmail<'a> {
    pub to: &'a str,
    pub inviter_name: &'a str,
    pub inviter_email: &'a str,
    pub workspace_name: &'a str,
    pub role: &'a str,
    pub link: &'a str,
    pub expires_at: Timestamp,
}

pub fn invitation(invite: &InvitationEmail<'_>) -> Email {
    let expires = human_time(invite.expires_at);
    let article = if invite.role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let subject = format!(
        "{} invited you to {} on heffl",
        one_line(invite.inviter_name),
        one_line(invite.workspace_name)
    );
    let text = format!(
        "{inviter} ({inviter_email}) invited you to join the workspace \"{workspace}\" as {article} \
         {role}.\n\nAccept the invitation:\n{link}\n\nThe link works once, until {expires}. If \
         you did not expect this invitation, ignore this email: nothing happens unless the link \
         is opened and accepted.\n",
        inviter = invite.inviter_name,
        inviter_email = invite.inviter_email,
        workspace = invite.workspace_name,
        role = invite.role,
        link = invite.link,
    );
    let html = format!(
        "<!doctype html>\n<html><body>\n<p><strong>{inviter}</strong> ({inviter_email}) invited \
         you to join the workspace <strong>{workspace}</strong> as {article} {role}.</p>\n\
         <p><a href=\"{link}\">Accept the invitation</a></p>\n<p>Or paste this link into your \
         browser: {link}</p>\n<p>The link works once, until {expires}. If you did not expect \
         this invitation, ignore this email.</p>\n</body></html>\n",
        inviter = escape(invite.inviter_name),
        inviter_email = escape(invite.inviter_email),
        workspace = escape(invite.workspace_name),
        role = escape(invite.role),
        link = escape(invite.link),
    );
    Email {
        to: invite.to.to_owned(),
        subject,
        text,
        html,
    }
}

/// What a password-reset email says: the link, how long it works, and what to do if the
/// recipient asked for nothing.
pub struct PasswordResetEmail<'a> {
    pub to: &'a str,
    pub link: &'a str,
    pub expires_at: Timestamp,
}

pub fn password_reset(reset: &PasswordResetEmail<'_>) -> Email {
    let expires = human_time(reset.expires_at);
    let text = format!(
        "Someone asked to reset the password of the heffl account of {to}.\n\nChoose a new \
         password:\n{link}\n\nThe link works once, until {expires}; setting a new password \
         signs every session of the account out. If you did not ask for this, ignore this \
         email: your password stays as it is.\n",
        to = reset.to,
        link = reset.link,
    );
    let html = format!(
        "<!doctype html>\n<html><body>\n<p>Someone asked to reset the password of the heffl \
         account of {to}.</p>\n<p><a href=\"{link}\">Choose a new password</a></p>\n<p>Or \
         paste this link into your browser: {link}</p>\n<p>The link works once, until \
         {expires}; setting a new password signs every session of the account out. If you did \
         not ask for this, ignore this email: your password stays as it is.</p>\n</body></html>\n",
        to = escape(reset.to),
        link = escape(reset.link),
    );
    Email {
        to: reset.to.to_owned(),
        subject: "Reset your heffl password".to_owned(),
        text,
        html,
    }
}

/// `2025-01-15 10:30 UTC`: minutes are enough for a person, and the zone is said.
fn human_time(at: Timestamp) -> String {
    let rfc = at.to_rfc3339();
    match (rfc.get(..10), rfc.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc,
    }
}

/// A subject is one line whatever a name holds.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2030-01-02T03:04:05Z
    const EXPIRES: Timestamp = Timestamp(1_893_553_445_000);

    fn invite<'a>(workspace: &'a str, inviter: &'a str) -> InvitationEmail<'a> {
        InvitationEmail {
            to: "new@example.com",
            inviter_name: inviter,
            inviter_email: "owner@example.com",
            workspace_name: workspace,
            role: "admin",
            link: "https://heffl.example.com/settings/developer#invitation=abc",
            expires_at: EXPIRES,
        }
    }

    #[test]
    fn an_invitation_says_who_where_which_role_the_link_and_until_when() {
        let email = invitation(&invite("Acme", "Olive Owner"));
        assert_eq!(email.to, "new@example.com");
        assert_eq!(email.subject, "Olive Owner invited you to Acme on heffl");
        for part in [&email.text, &email.html] {
            assert!(part.contains("Olive Owner"), "{part}");
            assert!(part.contains("owner@example.com"), "{part}");
            assert!(part.contains("Acme"), "{part}");
            assert!(part.contains("an admin"), "{part}");
            assert!(
                part.contains("https://heffl.example.com/settings/developer#invitation=abc"),
                "{part}"
            );
            assert!(part.contains("2030-01-02 03:04 UTC"), "{part}");
        }
    }

    #[test]
    fn names_are_escaped_in_html_and_kept_to_one_line_in_the_subject() {
        let email = invitation(&invite("<b>Acme</b> & \"co\"", "Eve\r\nBcc: x@y"));
        assert!(email
            .html
            .contains("&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;co&quot;"));
        assert!(!email.html.contains("<b>Acme"));
        assert!(!email.subject.contains(['\r', '\n']));
        assert!(
            email.text.contains("<b>Acme</b>"),
            "plain text is shown as is"
        );
    }

    #[test]
    fn a_reset_gives_the_link_its_lifetime_and_what_to_do_if_unasked() {
        let email = password_reset(&PasswordResetEmail {
            to: "jane@example.com",
            link: "https://h.example/settings/developer#reset=t0k",
            expires_at: EXPIRES,
        });
        assert_eq!(email.subject, "Reset your heffl password");
        for part in [&email.text, &email.html] {
            assert!(part.contains("https://h.example/settings/developer#reset=t0k"));
            assert!(part.contains("2030-01-02 03:04 UTC"));
            assert!(part.contains("ignore this email"));
            assert!(part.contains("jane@example.com"));
        }
    }
}

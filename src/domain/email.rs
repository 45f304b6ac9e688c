//! Where an invitation's email is, and why one was not sent. Closed sets: they are shown to
//! inviters, stored, and counted in metrics, so none of them carries what a mail server said
//! (which may echo an address or a credential).

use serde::Serialize;

/// Declares a closed set's names, once for the database, the API and the metrics.
macro_rules! closed_set {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<sqlx::Any>>::decode(value)?;
                $name::parse(&text)
                    .ok_or_else(|| format!("{text:?} is no {}", stringify!($name)).into())
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    /// Queued, not yet taken by the mail server.
    Pending,
    Sent,
    Failed,
}

closed_set!(EmailStatus {
    Pending => "pending",
    Sent => "sent",
    Failed => "failed",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailFailure {
    /// No connection: nothing listening, a name that does not resolve, a refused connection.
    Connection,
    Timeout,
    /// The TLS handshake failed (an untrusted certificate), or STARTTLS was required and not
    /// offered.
    Tls,
    /// The server answered 5xx: the message will not go through as it is.
    Rejected,
    /// The server answered 4xx: it may go through later.
    Deferred,
    /// The recipient is not an address that can be written into a message.
    InvalidAddress,
    /// Not even queued: too many emails were waiting.
    QueueFull,
}

closed_set!(EmailFailure {
    Connection => "connection_failed",
    Timeout => "timeout",
    Tls => "tls_failed",
    Rejected => "rejected",
    Deferred => "deferred",
    InvalidAddress => "invalid_address",
    QueueFull => "queue_full",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_themselves() {
        for status in EmailStatus::ALL {
            assert_eq!(EmailStatus::parse(status.as_str()), Some(*status));
        }
        for failure in EmailFailure::ALL {
            assert_eq!(EmailFailure::parse(failure.as_str()), Some(*failure));
        }
        assert_eq!(EmailStatus::parse("delivered"), None);
    }
}

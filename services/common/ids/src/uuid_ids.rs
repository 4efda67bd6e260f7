//! Ids that are UUIDs: one type each, made by [`uuid_id!`], parsed from their text at the edge.

/// Declares a UUID id type: `new()` (UUIDv7), `parse`, `as_uuid`, `Display`, `FromStr`, serde as
/// the UUID's text and, with the `sqlx` feature, Postgres `UUID` binding.
#[macro_export]
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Parses the text of an id (a UUID).
            pub fn parse(value: &str) -> Result<Self, String> {
                uuid::Uuid::parse_str(value).map(Self).map_err(|_| "must be an id (UUID)".to_owned())
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(value: &str) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(value: uuid::Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        $crate::uuid_id_sql!($name);
    };
}

#[cfg(feature = "sqlx")]
#[doc(hidden)]
#[macro_export]
macro_rules! uuid_id_sql {
    ($name:ident) => {
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <uuid::Uuid as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <uuid::Uuid as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <uuid::Uuid as sqlx::Decode<'r, sqlx::Postgres>>::decode(value).map(Self)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <uuid::Uuid as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
    };
}

#[cfg(not(feature = "sqlx"))]
#[doc(hidden)]
#[macro_export]
macro_rules! uuid_id_sql {
    ($name:ident) => {};
}

uuid_id!(
    /// A service day (agent-sessions).
    DayId
);
uuid_id!(
    /// A service task (task-distribution).
    TaskId
);
uuid_id!(
    /// A message template (messaging-templates).
    TemplateId
);
uuid_id!(
    /// An outbound message: one send of a template (messaging-templates).
    MessageId
);
uuid_id!(
    /// A CRM contact (messaging-templates).
    ContactId
);
uuid_id!(
    /// A webhook endpoint (notifications).
    WebhookId
);
uuid_id!(
    /// A browser's Web Push subscription (notifications).
    PushSubscriptionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_parse_their_text_and_refuse_anything_else() {
        let id = TaskId::new();
        assert_eq!(TaskId::parse(&id.to_string()), Ok(id));
        assert!(TaskId::parse("not-a-uuid").is_err());
        assert!(TaskId::parse("").is_err());
        let later = TaskId::new();
        assert!(later > id, "UUIDv7 ids sort by creation");
    }
}

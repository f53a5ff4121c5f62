//! `labels!`: the string forms of a small enum (`as_str`, `FromStr`, `Display`), written once.

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum from its labels.
/// `$refuse` turns a refused input into the `FromStr` error, of type `$err`. `trim` says
/// whether spaces around the input are ignored (environment values) or refused (roles
/// stored in the database: `" admin"` is not `admin`).
macro_rules! labels {
    ($ty:ty, $err:ty, trim: $trim:literal, $refuse:expr, $($variant:path => $label:literal),+ $(,)?) => {
        impl $ty {
            /// The label, as stored or written in the environment.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $label),+ }
            }

            /// Every label, separated by spaces (for error messages).
            #[allow(dead_code)]
            pub(crate) const LABELS: &'static str = concat!($($label, " "),+);
        }

        impl ::std::str::FromStr for $ty {
            type Err = $err;

            fn from_str(s: &str) -> Result<Self, $err> {
                match if $trim { s.trim() } else { s } {
                    $($label => Ok($variant),)+
                    other => Err(($refuse)(other)),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::config::{Environment, MigrationStrategy};
    use crate::Role;

    #[test]
    fn labels_round_trip_and_only_environment_values_are_trimmed() {
        for role in [Role::User, Role::Admin, Role::Operator, Role::Support] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(role.to_string(), role.as_str());
        }
        for refused in [" admin", "admin ", "Admin", "", "admin\0"] {
            assert!(refused.parse::<Role>().is_err(), "{refused:?}");
        }
        assert_eq!(
            " production ".parse::<Environment>().unwrap(),
            Environment::Production
        );
        assert_eq!(
            "gradual\n".parse::<MigrationStrategy>().unwrap(),
            MigrationStrategy::Gradual
        );
        assert!("Production".parse::<Environment>().is_err());
    }
}

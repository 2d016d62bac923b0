//! [`config_defaults!`](crate::config_defaults): a settings struct whose every field states its default once, beside the field. The
//! macro writes the struct (the default appended to each field's documentation) and its `impl Default`, so a
//! default cannot say one thing in the docs and do another.

/// Declares a struct with one default per field and implements [`Default`] from them:
///
/// ```
/// student_arch::config_defaults! {
///     /// How long to train.
///     #[derive(Clone, Debug, PartialEq)]
///     pub struct Schedule {
///         /// Passes over the data.
///         pub epochs: usize = 3,
///         /// Peak learning rate.
///         pub learning_rate: f64 = 5e-5,
///     }
/// }
/// assert_eq!(Schedule::default().epochs, 3);
/// ```
#[macro_export]
macro_rules! config_defaults {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[$fmeta])*
                #[doc = concat!("\n\nDefault: `", stringify!($default), "`.")]
                $fvis $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                }
            }
        }
    };
}

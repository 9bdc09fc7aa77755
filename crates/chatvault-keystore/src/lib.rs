//! Key stores outside a chatvault repository, for key slots whose key never lives in the
//! repository or on the host's disk: [`Pkcs11Store`] (a hardware security module or
//! token reached through PKCS#11: YubiHSM, Nitrokey, SmartCard-HSM, Thales/Luna, AWS
//! CloudHSM, SoftHSM2) and [`CommandStore`] (any other KMS, through a command: Vault
//! transit, a cloud KMS client).
//!
//! Both implement core's [`KeyWrapper`](chatvault_core::KeyWrapper): a new slot's random
//! seed is wrapped by the store, and opening the slot asks the store to unwrap it. Core
//! knows no hardware; this crate is where `cryptoki` is linked, so core and its fuzz
//! build stay free of it. Errors are core's ([`chatvault_core::Error::WrongPin`],
//! [`chatvault_core::Error::KeyStore`]): the trait's contract is stated in them, and the
//! CLI maps them to exit codes with everything else core reports.
//!
//! ```no_run
//! use chatvault_core::KeySource;
//! use chatvault_keystore::{Pkcs11Options, Pkcs11Store};
//!
//! let store = Pkcs11Store::new(
//!     Pkcs11Options {
//!         module: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!         token_label: Some("chatvault".into()),
//!         key_label: Some("chatvault-kek".into()),
//!     },
//!     Box::new(|| Ok(zeroize::Zeroizing::new(std::env::var("PIN").unwrap_or_default()))),
//! );
//! let key = KeySource::External(Box::new(store));
//! # let _ = key;
//! ```

#![deny(missing_docs)]

mod command;
mod pkcs11;
#[doc(hidden)]
pub mod test_token;

pub use command::{CommandOptions, CommandStore};
pub use pkcs11::{PinSource, Pkcs11Options, Pkcs11Store};

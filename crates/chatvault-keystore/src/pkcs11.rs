//! The PKCS#11 key store: a slot's seed is encrypted and decrypted inside a token by a
//! non-extractable AES-256 key (`CKM_AES_GCM`, a random 96-bit IV, a 128-bit tag, the
//! slot's binding as associated data).
//!
//! Invariants: the PIN is asked for at most once per store, only when a token operation
//! needs it, and is never printed or put in an error; a refused PIN is
//! `Error::WrongPin` and is not retried (a token locks after a few failed logins); the
//! module comes from the operator, never from the repository (a slot names only its token
//! and key labels).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chatvault_core::{Error, KeyWrapper, Result, SeedWrap, SlotKind, SlotSeed, TOKEN_IV_LEN};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

/// Where the PIN comes from: called at most once, when a token first needs it (a file, an
/// environment variable, a command, a prompt). Its error is shown to the operator.
pub type PinSource = Box<dyn Fn() -> std::result::Result<Zeroizing<String>, String> + Send + Sync>;

/// Which token and key new slots are wrapped with, and the module that reaches them.
#[derive(Debug, Clone)]
pub struct Pkcs11Options {
    /// The PKCS#11 module (shared library) of the token: Debian's SoftHSM2 is
    /// `/usr/lib/softhsm/libsofthsm2.so`, a YubiHSM's `yubihsm_pkcs11.so`. No default:
    /// the operator names it.
    pub module: PathBuf,
    /// The token that wraps new slots (its label). Not needed to open a slot: the slot
    /// records its token's label.
    pub token_label: Option<String>,
    /// The AES-256 key (its `CKA_LABEL`) that wraps new slots. Not needed to open a slot.
    pub key_label: Option<String>,
}

/// A [`KeyWrapper`] for PKCS#11 tokens: creates and opens `pkcs11` key slots.
///
/// It keeps one logged-in session per token until it is dropped. PKCS#11 login state
/// belongs to the process: while any session of this process is logged in to a token,
/// another login to it succeeds whatever the PIN, so a process that checks PINs must not
/// keep another store's session open meanwhile.
pub struct Pkcs11Store {
    opts: Pkcs11Options,
    pin: PinSource,
    state: Mutex<State>,
}

/// The loaded module, the PIN once asked, and one logged-in session per token.
#[derive(Default)]
struct State {
    module: Option<Pkcs11>,
    pin: Option<Zeroizing<String>>,
    sessions: HashMap<String, Session>,
}

impl fmt::Debug for Pkcs11Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Store")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn store_name(token: &str) -> String {
    format!("token {token:?}")
}

fn failed(token: &str, reason: impl Into<String>) -> Error {
    Error::KeyStore {
        store: store_name(token),
        reason: reason.into(),
    }
}

/// A PKCS#11 failure in a few words: the function and the return value's name (the
/// crate's Display of a return value is a paragraph of the standard).
fn describe(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, func) => format!("{func:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

impl Pkcs11Store {
    /// A store for `opts`, asking `pin` for the user PIN when a token first needs it.
    pub fn new(opts: Pkcs11Options, pin: PinSource) -> Self {
        Self {
            opts,
            pin,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `f` with a logged-in session on the token labelled `token`.
    fn with_session<T>(&self, token: &str, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| failed(token, "an earlier token operation panicked"))?;
        if !state.sessions.contains_key(token) {
            let session = self.login(&mut state, token, false)?;
            state.sessions.insert(token.to_owned(), session);
        }
        f(&state.sessions[token])
    }

    fn login(&self, state: &mut State, token: &str, rw: bool) -> Result<Session> {
        let module = load_module(&mut state.module, &self.opts.module, token)?;
        let slot = find_token(module, token, &self.opts.module)?;
        let session = if rw {
            module.open_rw_session(slot)
        } else {
            module.open_ro_session(slot)
        }
        .map_err(|e| failed(token, format!("opening a session: {}", describe(&e))))?;
        if state.pin.is_none() {
            let pin = (self.pin)().map_err(|reason| failed(token, reason))?;
            state.pin = Some(pin);
        }
        let pin = AuthPin::from(state.pin.as_deref().map(String::as_str).unwrap_or(""));
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                Ok(session)
            }
            Err(e) => {
                let e = login_error(token, &e);
                if matches!(e, Error::WrongPin { .. }) {
                    // A refused PIN is not kept: a later attempt with this store asks again.
                    state.pin = None;
                }
                Err(e)
            }
        }
    }

    /// Creates a non-extractable AES-256 key labelled `key_label` on the token labelled
    /// `token_label`, for wrapping slots: `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`,
    /// `CKA_ENCRYPT` and `CKA_DECRYPT` true, `CKA_EXTRACTABLE` false. Refuses a label
    /// that a secret key on the token already has.
    pub fn generate_key(&self, token_label: &str, key_label: &str) -> Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| failed(token_label, "an earlier token operation panicked"))?;
        let session = self.login(&mut state, token_label, true)?;
        if !find_keys(&session, token_label, key_label)?.is_empty() {
            return Err(failed(
                token_label,
                format!("a secret key labelled {key_label:?} already exists"),
            ));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::ValueLen(32.into()),
            Attribute::Label(key_label.as_bytes().to_vec()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| failed(token_label, format!("generating the key: {}", describe(&e))))?;
        Ok(())
    }

    fn labels(&self) -> Result<(&str, &str)> {
        match (&self.opts.token_label, &self.opts.key_label) {
            (Some(t), Some(k)) => Ok((t, k)),
            _ => Err(Error::InvalidArgument {
                what: "pkcs11 key slot",
                reason: "a new slot needs a token label and a key label".into(),
            }),
        }
    }
}

/// A failed login: `WrongPin` when the token refused the PIN itself.
fn login_error(token: &str, e: &cryptoki::error::Error) -> Error {
    let cryptoki::error::Error::Pkcs11(rv, _) = e else {
        return failed(token, format!("logging in: {}", describe(e)));
    };
    let reason = match rv {
        RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid => {
            "the token refused it"
        }
        RvError::PinLocked => "the PIN is locked (too many wrong attempts)",
        RvError::PinExpired => "the PIN has expired",
        _ => return failed(token, format!("logging in: {}", describe(e))),
    };
    Error::WrongPin {
        store: store_name(token),
        reason: reason.into(),
    }
}

fn load_module<'a>(slot: &'a mut Option<Pkcs11>, path: &Path, token: &str) -> Result<&'a Pkcs11> {
    if slot.is_none() {
        let module = Pkcs11::new(path).map_err(|e| {
            failed(
                token,
                format!("loading the PKCS#11 module {}: {e}", path.display()),
            )
        })?;
        match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(failed(
                    token,
                    format!(
                        "initialising the PKCS#11 module {}: {}",
                        path.display(),
                        describe(&e)
                    ),
                ));
            }
        }
        *slot = Some(module);
    }
    Ok(slot.as_ref().expect("set above"))
}

fn find_token(module: &Pkcs11, label: &str, path: &Path) -> Result<cryptoki::slot::Slot> {
    let slots = module
        .get_slots_with_token()
        .map_err(|e| failed(label, format!("listing tokens: {}", describe(&e))))?;
    let mut seen = Vec::new();
    for slot in slots {
        let Ok(info) = module.get_token_info(slot) else {
            continue;
        };
        if info.label() == label {
            return Ok(slot);
        }
        seen.push(format!("{:?}", info.label()));
    }
    Err(failed(
        label,
        format!(
            "no token with this label in the PKCS#11 module {} (tokens present: {})",
            path.display(),
            if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            }
        ),
    ))
}

fn find_keys(session: &Session, token: &str, key_label: &str) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(key_label.as_bytes().to_vec()),
        ])
        .map_err(|e| {
            failed(
                token,
                format!("finding key {key_label:?}: {}", describe(&e)),
            )
        })
}

/// The one AES key labelled `key_label`: none is an error that says the slot cannot be
/// opened without it, several are ambiguous.
fn find_key(session: &Session, token: &str, key_label: &str) -> Result<ObjectHandle> {
    match find_keys(session, token, key_label)?.as_slice() {
        [key] => Ok(*key),
        [] => Err(failed(
            token,
            format!(
                "no secret key labelled {key_label:?} on the token (deleted, or another \
                 token?): the key slots it wraps cannot be opened without it"
            ),
        )),
        more => Err(failed(
            token,
            format!(
                "{} secret keys are labelled {key_label:?}: give each key its own label",
                more.len()
            ),
        )),
    }
}

fn gcm<'a>(iv: &'a mut [u8], aad: &'a [u8], token: &str) -> Result<Mechanism<'a>> {
    let params = GcmParams::new(iv, aad, 128.into())
        .map_err(|e| failed(token, format!("AES-GCM parameters: {}", describe(&e))))?;
    Ok(Mechanism::AesGcm(params))
}

impl KeyWrapper for Pkcs11Store {
    fn kind(&self) -> SlotKind {
        SlotKind::Pkcs11
    }

    fn wrap(&self, seed: &SlotSeed, binding: &[u8]) -> Result<SeedWrap> {
        let (token, key_label) = self.labels()?;
        let iv = random_iv(token)?;
        let ciphertext = self.with_session(token, |session| {
            let key = find_key(session, token, key_label)?;
            let mut iv_param = iv;
            let mech = gcm(&mut iv_param, binding, token)?;
            session.encrypt(&mech, key, seed.expose()).map_err(|e| {
                failed(
                    token,
                    format!("encrypting with {key_label:?}: {}", describe(&e)),
                )
            })
        })?;
        Ok(SeedWrap::Pkcs11 {
            token_label: token.to_owned(),
            key_label: key_label.to_owned(),
            iv,
            ciphertext,
        })
    }

    fn unwrap(&self, wrap: &SeedWrap, binding: &[u8]) -> Result<SlotSeed> {
        let SeedWrap::Pkcs11 {
            token_label,
            key_label,
            iv,
            ciphertext,
        } = wrap
        else {
            return Err(Error::WrongPassphrase);
        };
        let plain = self.with_session(token_label, |session| {
            let key = find_key(session, token_label, key_label)?;
            let mut iv = *iv;
            let mech = gcm(&mut iv, binding, token_label)?;
            session
                .decrypt(&mech, key, ciphertext)
                .map(Zeroizing::new)
                .map_err(|e| {
                    failed(
                        token_label,
                        format!(
                            "key {key_label:?} did not decrypt this slot's seed ({}): it is \
                             not the key that wrapped it, or the slot was altered",
                            describe(&e)
                        ),
                    )
                })
        })?;
        let seed: [u8; 32] = plain[..].try_into().map_err(|_| {
            failed(
                token_label,
                format!("decrypted {} bytes, not a 32-byte seed", plain.len()),
            )
        })?;
        Ok(SlotSeed::from_bytes(Zeroizing::new(seed)))
    }
}

/// A fresh random IV from the operating system's CSPRNG: public, and it must only never
/// repeat under one key (2^-48 for a birthday collision after 2^24 slots).
fn random_iv(token: &str) -> Result<[u8; TOKEN_IV_LEN]> {
    let mut iv = [0u8; TOKEN_IV_LEN];
    getrandom::fill(&mut iv).map_err(|e| failed(token, format!("no random IV: {e}")))?;
    Ok(iv)
}

//! The command key store: a KMS reached through a command the operator configures, as age
//! plugins and git credential helpers are.
//!
//! Protocol (`sh -c COMMAND`, each run with `CHATVAULT_KEY_CONTEXT` set to the slot's
//! binding in base64): the wrap command reads the seed, base64 and a newline, on its
//! standard input and prints the wrapped seed (any text; trailing white space is dropped);
//! the unwrap command reads the wrapped seed and a newline and prints the seed in base64.
//! Vault transit's `encrypt` and `decrypt` take and print exactly these.
//!
//! Invariants: the commands come from the operator, never from the repository (a slot
//! stores only the wrapped seed); a command that fails, prints nothing usable or runs
//! past its timeout is an `Error::KeyStore` with its exit status and standard error, never
//! its standard output (which holds the seed) and never the seed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chatvault_core::{Error, KeyWrapper, Result, SeedWrap, SlotKind, SlotSeed};
use zeroize::Zeroizing;

/// The commands of a command key store. `Debug` does not show the commands: a command
/// line may carry a credential (a KMS token).
#[derive(Clone)]
pub struct CommandOptions {
    /// The shell command that wraps a new slot's seed. Only needed to create slots.
    pub wrap: Option<String>,
    /// The shell command that unwraps a slot's seed.
    pub unwrap: String,
    /// How long one run may take before it is killed. By default, 60 seconds.
    pub timeout: Duration,
}

impl CommandOptions {
    /// Opening slots with `unwrap`, creating none; the default timeout.
    pub fn new(unwrap: &str) -> Self {
        Self {
            wrap: None,
            unwrap: unwrap.to_owned(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for CommandOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandOptions")
            .field("wrap", &self.wrap.as_ref().map(|_| "<set>"))
            .field("unwrap", &"<set>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A [`KeyWrapper`] that runs commands: creates and opens `command` key slots.
#[derive(Debug)]
pub struct CommandStore {
    opts: CommandOptions,
}

/// The most a command may print on either stream.
const MAX_OUTPUT: usize = 64 << 10;

impl CommandStore {
    /// A store running the commands of `opts`.
    pub fn new(opts: CommandOptions) -> Self {
        Self { opts }
    }
}

fn failed(which: &str, reason: impl Into<String>) -> Error {
    Error::KeyStore {
        store: format!("the {which} command"),
        reason: reason.into(),
    }
}

/// What a command's standard error says, cut to its last lines and with control
/// characters escaped.
fn stderr_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(1999)
        .map(|(i, _)| i)
        .unwrap_or(0);
    chatvault_core::printable(&text[start..]).into_owned()
}

/// Runs `command` with `input` on its standard input; returns its standard output.
fn run(
    which: &str,
    command: &str,
    input: &[u8],
    binding: &[u8],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut cmd = Command::new("sh");
    // Its own process group, so that a timeout kills what it started too (a `sleep`, a
    // KMS client), whose open pipes would otherwise keep us reading.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .arg("-c")
        .arg(command)
        .env("CHATVAULT_KEY_CONTEXT", STANDARD.encode(binding))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(which, format!("could not start: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let input = Zeroizing::new(input.to_vec());
    let (out, err) = std::thread::scope(|scope| {
        // A command that does not read its input must not block us: write on a thread,
        // and ignore a broken pipe (its exit status tells).
        scope.spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = scope.spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let _ = (&mut stdout)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf);
            buf
        });
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(MAX_OUTPUT as u64).read_to_end(&mut buf);
            buf
        });
        let status = wait(&mut child, timeout);
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        (status.map(|s| (s, out)), err)
    });
    let (status, out) = out.map_err(|reason| failed(which, reason))?;
    if !status.success() {
        let said = stderr_text(&err);
        return Err(failed(
            which,
            if said.is_empty() {
                format!("failed ({status})")
            } else {
                format!("failed ({status}): {said}")
            },
        ));
    }
    if out.len() > MAX_OUTPUT {
        return Err(failed(which, "printed more than 64 KiB"));
    }
    Ok(out)
}

/// Waits for the child, killing it after `timeout`.
fn wait(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::result::Result<std::process::ExitStatus, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                #[cfg(unix)]
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {} s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

impl KeyWrapper for CommandStore {
    fn kind(&self) -> SlotKind {
        SlotKind::Command
    }

    fn wrap(&self, seed: &SlotSeed, binding: &[u8]) -> Result<SeedWrap> {
        let command = self.opts.wrap.as_deref().ok_or(Error::InvalidArgument {
            what: "command key slot",
            reason: "a new slot needs a wrap command".into(),
        })?;
        let mut input = Zeroizing::new(STANDARD.encode(seed.expose()).into_bytes());
        input.push(b'\n');
        let out = run("wrap", command, &input, binding, self.opts.timeout)?;
        let ciphertext = trim_end(&out).to_vec();
        if ciphertext.is_empty() {
            return Err(failed("wrap", "printed nothing"));
        }
        Ok(SeedWrap::Command { ciphertext })
    }

    fn unwrap(&self, wrap: &SeedWrap, binding: &[u8]) -> Result<SlotSeed> {
        let SeedWrap::Command { ciphertext } = wrap else {
            return Err(Error::WrongPassphrase);
        };
        let mut input = ciphertext.clone();
        input.push(b'\n');
        let out = run(
            "unwrap",
            &self.opts.unwrap,
            &input,
            binding,
            self.opts.timeout,
        )?;
        let decoded = Zeroizing::new(STANDARD.decode(trim_end(&out)).map_err(|_| {
            failed(
                "unwrap",
                "did not print a base64 seed (its output is not shown: it may hold secrets)",
            )
        })?);
        let seed: [u8; 32] = decoded[..].try_into().map_err(|_| {
            failed(
                "unwrap",
                format!(
                    "printed {} bytes in base64, not a 32-byte seed",
                    decoded.len()
                ),
            )
        })?;
        Ok(SlotSeed::from_bytes(Zeroizing::new(seed)))
    }
}

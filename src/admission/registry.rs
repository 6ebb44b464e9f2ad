//! Keys made at run time through the admin API, next to those of the config file.
//!
//! A key made here is stored only as the SHA-256 of its secret, which is shown once, when it is made or
//! rotated. Rotation keeps the previous secret valid for a grace period, so clients can move over. With
//! `[admin] state_file` the keys are written to that file (atomically: a temporary file, then a rename, mode
//! 0600) after every change and read back at start, so a restart keeps them; without it they last as long as
//! the process.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ClientKey, KeyLimits};

/// One key made at run time, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredKey {
    pub(crate) name: String,
    /// Hex SHA-256 of the secret.
    sha256: String,
    /// The secret before the last rotation, and until when (Unix seconds) it still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<(String, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) models: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) limits: KeyLimits,
    /// The group (from the config's `[[groups]]`) whose limits the key shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<serde_json::Value>,
    pub(crate) created_at: u64,
    /// A random id of its own, made with it: what owns what the key keeps (never a later key of the same name).
    /// Empty in state written before there were ids.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) id: String,
}

impl StoredKey {
    /// Until when a rotated-out secret still works (Unix seconds), if it still does.
    pub(crate) fn previous_until(&self) -> Option<u64> {
        self.previous
            .as_ref()
            .map(|(_, until)| *until)
            .filter(|&until| until > now_unix())
    }
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct State {
    #[serde(default)]
    keys: BTreeMap<String, StoredKey>,
}

/// A key as the authentication step sees it: its digests, each valid until an optional time.
pub(crate) struct Runtime {
    pub(crate) key: ClientKey,
    /// More digests for the same identity (a rotated-out secret), each with its end.
    pub(crate) also: Vec<([u8; 32], SystemTime)>,
    /// The key's own end.
    pub(crate) expires: Option<SystemTime>,
    /// What tells it from a later key of the same name: its id (or, made before ids, its making time).
    pub(crate) owner: String,
}

#[derive(Debug)]
pub(crate) struct Registry {
    path: Option<PathBuf>,
    state: Mutex<State>,
    /// With `[shared]`: the version of the fleet's keys this state is (Redis is the truth, not the file).
    version: std::sync::atomic::AtomicU64,
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unhex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new secret: `sk-aigw-` and 32 bytes from the OS's CSPRNG in hex, with its digest. (Request ids use a fast
/// generator; a secret must not be guessable from others.)
fn secret() -> Result<(String, String), RegistryError> {
    let bytes: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map(|random| random.expose())
        .map_err(|_| RegistryError::Unavailable("the system's random generator failed".into()))?;
    let key = format!(
        "sk-aigw-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let digest = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((key, digest))
}

/// A key's own id: 16 random hex digits from the OS generator.
fn key_id() -> Result<String, RegistryError> {
    let bytes: [u8; 8] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map(|random| random.expose())
        .map_err(|_| RegistryError::Unavailable("the system's random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the caller asked for when making a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    pub(crate) name: String,
    pub(crate) models: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) limits: KeyLimits,
    pub(crate) group: Option<String>,
    pub(crate) expires_at: Option<u64>,
    pub(crate) metadata: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("a key named '{0}' exists")]
    Exists(String),
    #[error("no key named '{0}' was made through the API")]
    Missing(String),
    #[error("saving the key state: {0}")]
    Save(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Registry {
    /// Reads the state file if there is one (a missing file is an empty state; an unreadable one an error).
    pub(crate) fn open(path: Option<&Path>) -> Result<Registry, String> {
        let state = match path {
            None => State::default(),
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| format!("admin.state_file: {}: {e}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
                Err(e) => return Err(format!("admin.state_file: {}: {e}", p.display())),
            },
        };
        Ok(Registry {
            path: path.map(Path::to_owned),
            state: Mutex::new(state),
            version: Default::default(),
        })
    }

    /// The fleet's version this state is.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the fleet's state (JSON) at `version`; an unreadable one is refused and changes nothing. With a
    /// state file it is written there too, so each replica holds a copy it can write back if Redis loses them.
    pub(crate) fn adopt(&self, version: u64, json: Option<&str>) -> Result<(), String> {
        let state: State = match json {
            Some(j) => serde_json::from_str(j).map_err(|e| format!("the fleet's keys: {e}"))?,
            None => State::default(),
        };
        let mut held = self.lock();
        if *held != state {
            if let Err(e) = self.save(&state) {
                tracing::warn!(error = %e, "the fleet's keys were not copied to the state file");
            }
            *held = state;
        }
        self.version
            .store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether the fleet's keys at `version` (in Redis) are older than what this replica knows: versions only
    /// grow, so Redis at a lower one, or at none while keys are known here (a state file's, say), lost them.
    pub(crate) fn lost_by_the_fleet(&self, version: u64) -> bool {
        version < self.version() || (version == 0 && !self.lock().keys.is_empty())
    }

    /// This state as the fleet stores it.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&*self.lock()).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &State) -> Result<(), RegistryError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| RegistryError::Save(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| RegistryError::Save(format!("{}: {e}", path.display())))
    }

    pub(crate) fn list(&self) -> Vec<StoredKey> {
        self.lock().keys.values().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<StoredKey> {
        self.lock().keys.get(name).cloned()
    }

    /// Makes a key; returns it and its secret (shown this once). `taken` says whether a config key has the name.
    pub(crate) fn create(
        &self,
        new: NewKey,
        taken: bool,
    ) -> Result<(StoredKey, String), RegistryError> {
        let name = new.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(RegistryError::Invalid(
                "name: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.'".into(),
            ));
        }
        if new.limits.rpm == Some(0)
            || new.limits.tpm == Some(0)
            || new.limits.concurrency == Some(0)
        {
            return Err(RegistryError::Invalid(
                "a limit of 0 refuses every call".into(),
            ));
        }
        if new.limits.bad_budget() {
            return Err(RegistryError::Invalid(
                "limits.daily_budget_usd: must be above 0".into(),
            ));
        }
        let mut state = self.lock();
        if taken || state.keys.contains_key(name) {
            return Err(RegistryError::Exists(name.to_owned()));
        }
        let (key, sha256) = secret()?;
        let stored = StoredKey {
            name: name.to_owned(),
            sha256,
            previous: None,
            models: new.models,
            limits: new.limits,
            group: new.group,
            expires_at: new.expires_at,
            metadata: new.metadata,
            created_at: now_unix(),
            id: key_id()?,
        };
        state.keys.insert(stored.name.clone(), stored.clone());
        if let Err(e) = self.save(&state) {
            state.keys.remove(name);
            return Err(e);
        }
        Ok((stored, key))
    }

    /// Revokes a key made through the API.
    pub(crate) fn delete(&self, name: &str) -> Result<(), RegistryError> {
        let mut state = self.lock();
        let removed = state
            .keys
            .remove(name)
            .ok_or_else(|| RegistryError::Missing(name.to_owned()))?;
        if let Err(e) = self.save(&state) {
            state.keys.insert(name.to_owned(), removed);
            return Err(e);
        }
        Ok(())
    }

    /// A new secret for a key; the old one keeps working for `grace`.
    pub(crate) fn rotate(
        &self,
        name: &str,
        grace: Duration,
    ) -> Result<(StoredKey, String), RegistryError> {
        let mut state = self.lock();
        let before = state
            .keys
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::Missing(name.to_owned()))?;
        let (key, sha256) = secret()?;
        let mut next = before.clone();
        next.previous = Some((before.sha256.clone(), now_unix() + grace.as_secs()));
        next.sha256 = sha256;
        state.keys.insert(name.to_owned(), next.clone());
        if let Err(e) = self.save(&state) {
            state.keys.insert(name.to_owned(), before);
            return Err(e);
        }
        Ok((next, key))
    }

    /// Changes a stored key's rates and budgets to `new`'s (its concurrency stays); false when no such key is
    /// stored.
    pub(crate) fn set_limits(&self, name: &str, new: KeyLimits) -> Result<bool, RegistryError> {
        let mut state = self.lock();
        let Some(stored) = state.keys.get_mut(name) else {
            return Ok(false);
        };
        let before = stored.limits;
        stored.limits = KeyLimits {
            concurrency: before.concurrency,
            ..new
        };
        if let Err(e) = self.save(&state) {
            if let Some(stored) = state.keys.get_mut(name) {
                stored.limits = before;
            }
            return Err(e);
        }
        Ok(true)
    }

    /// The stored keys as the key store takes them, `defaults` under their own limits.
    pub(crate) fn runtime(&self, defaults: KeyLimits) -> Vec<Runtime> {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        self.lock()
            .keys
            .values()
            .filter_map(|k| {
                let sha256 = unhex(&k.sha256)?;
                let also = k
                    .previous
                    .as_ref()
                    .and_then(|(hex, until)| Some((unhex(hex)?, at(*until))))
                    .into_iter()
                    .collect();
                Some(Runtime {
                    key: ClientKey {
                        name: k.name.clone(),
                        sha256,
                        models: k.models.clone(),
                        limits: k.limits.or(defaults),
                        group: k.group.clone(),
                        model_limits: Default::default(),
                    },
                    also,
                    expires: k.expires_at.map(at),
                    owner: if k.id.is_empty() {
                        format!("api:{}:{}", k.name, k.created_at)
                    } else {
                        format!("api:{}", k.id)
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            models: None,
            limits: KeyLimits::default(),
            group: None,
            expires_at: None,
            metadata: Some(serde_json::json!({"team": "a"})),
        }
    }

    #[test]
    fn keys_survive_a_restart_through_the_state_file_as_digests_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let reg = Registry::open(Some(&path)).unwrap();
        let (made, secret) = reg.create(new("team-a"), false).unwrap();
        assert!(secret.starts_with("sk-aigw-") && secret.len() == 8 + 64);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the secret is never stored");
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions()
            ) & 0o777,
            0o600
        );
        let again = Registry::open(Some(&path)).unwrap();
        assert_eq!(again.get("team-a"), Some(made));
        assert_eq!(
            again.create(new("team-a"), false).unwrap_err(),
            RegistryError::Exists("team-a".into())
        );
        again.delete("team-a").unwrap();
        assert!(Registry::open(Some(&path)).unwrap().list().is_empty());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let reg = Registry::open(None).unwrap();
        assert!(matches!(
            reg.create(new("a b"), false),
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            reg.create(new("cfg"), true),
            Err(RegistryError::Exists(_))
        ));
        let mut zero = new("z");
        zero.limits.rpm = Some(0);
        assert!(matches!(
            reg.create(zero, false),
            Err(RegistryError::Invalid(_))
        ));
        assert_eq!(
            reg.delete("nope"),
            Err(RegistryError::Missing("nope".into()))
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Registry::open(Some(&dir.path().join("none.json"))).is_ok(),
            "a missing file is empty"
        );
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        assert!(Registry::open(Some(&dir.path().join("bad.json"))).is_err());
    }

    /// Secrets come from the OS generator, not from the fast one request ids use: reseeding that one the same way
    /// twice does not repeat a secret.
    #[test]
    fn secrets_do_not_come_from_the_fast_generator() {
        fastrand::seed(7);
        let (a, _) = secret().unwrap();
        fastrand::seed(7);
        let (b, _) = secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), "sk-aigw-".len() + 64);
    }

    #[test]
    fn a_rotated_key_keeps_its_old_secret_for_the_grace_period() {
        let reg = Registry::open(None).unwrap();
        let (before, _) = reg.create(new("k"), false).unwrap();
        let (after, secret) = reg.rotate("k", Duration::from_secs(3600)).unwrap();
        assert_ne!(before.sha256, after.sha256);
        let (old, until) = after.previous.clone().unwrap();
        assert_eq!(old, before.sha256);
        assert!(until >= now_unix() + 3599);
        let rt = reg.runtime(KeyLimits::default());
        assert_eq!(rt[0].also.len(), 1);
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        assert_eq!(rt[0].key.sha256, digest);
    }
}

//! An in-memory backend for tests and for embedding code that wants a scratch repository.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Backend, ObjectInfo, check_name, range_in};
use crate::error::{Error, Result};

/// Objects in a shared map. Clones share the same storage, like two clients of one store.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // operation is one insert or remove), so a poisoned lock is still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Overwrites an object's bytes in place, bypassing the write-once contract: for tests
    /// that simulate corruption of the storage.
    pub fn corrupt_object(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut map = self.map();
        if let Some(v) = map.get_mut(name) {
            let mut bytes = v.as_ref().clone();
            f(&mut bytes);
            *v = Arc::new(bytes);
        }
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let mut map = self.map();
        if map.contains_key(name) {
            return Err(Error::AlreadyExists {
                object: name.into(),
            });
        }
        map.insert(name.to_owned(), Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        self.map().insert(name.to_owned(), Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        let v = self.map().get(name).cloned();
        v.map(|v| v.as_ref().clone())
            .ok_or_else(|| Error::NotFound {
                object: name.into(),
            })
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        let v = self
            .map()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                object: name.into(),
            })?;
        range_in(name, v.len() as u64, offset, len)?;
        Ok(v[offset as usize..(offset + len) as usize].to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .map()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                name: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.map().remove(name);
        Ok(())
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        check_name(name)?;
        let size = self.map().get(name).map(|v| v.len() as u64);
        size.map(|size| ObjectInfo {
            name: name.to_owned(),
            size,
        })
        .ok_or_else(|| Error::NotFound {
            object: name.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contract() {
        super::super::contract_tests::run(&super::MemoryBackend::new());
    }
}

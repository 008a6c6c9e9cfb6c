//! Each group's view in etcd, at `<prefix>/groups/<name>/view`, as JSON in
//! the state file's encoding ([`GroupState`]). A write succeeds only while
//! the writer holds the authority (fencing: the authority key's
//! `create_revision` must be the one it won) and the view is the one it
//! last read (compare-and-swap on `mod_revision`); and only one view is
//! ever stored per epoch. The names of the groups an operator drained live
//! beside them, at `<prefix>/drained`, written by the authority only.

use std::collections::BTreeMap;

use super::election::AuthorityToken;
use super::error::CoordinationError;
use super::etcd::{Compare, EtcdClient, KeyValue, Op, OpResult};
use crate::state::GroupState;

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written; etcd's revision after the write.
    Written(i64),
    /// etcd already held exactly this view.
    Unchanged,
}

/// A group's view as last read from or written to etcd.
#[derive(Debug, Clone)]
struct Known {
    mod_revision: i64,
    view: Option<GroupState>,
}

/// The groups' views in etcd.
#[derive(Debug)]
pub struct ViewStore {
    client: EtcdClient,
    prefix: String,
    known: BTreeMap<String, Known>,
}

impl ViewStore {
    /// The views under `prefix`.
    pub fn new(client: EtcdClient, prefix: &str) -> ViewStore {
        ViewStore {
            client,
            prefix: prefix.to_string(),
            known: BTreeMap::new(),
        }
    }

    /// The key of a group's view.
    pub fn key(&self, group: &str) -> Vec<u8> {
        format!("{}/groups/{group}/view", self.prefix).into_bytes()
    }

    fn drained_key(&self) -> Vec<u8> {
        format!("{}/drained", self.prefix).into_bytes()
    }

    /// The groups an operator drained, as etcd holds them (none when never
    /// written).
    pub fn load_drained(&self) -> Result<Vec<String>, CoordinationError> {
        let key = self.drained_key();
        let (_, kv) = self.client.get(&key)?;
        let Some(kv) = kv else {
            return Ok(Vec::new());
        };
        serde_json::from_slice(&kv.value).map_err(|e| CoordinationError::BadResponse {
            endpoint: String::from_utf8_lossy(&key).into_owned(),
            detail: format!("the stored value is not a list of group names: {e}"),
        })
    }

    /// Store the drained groups' names, if `token` still holds the
    /// authority.
    pub fn save_drained(
        &self,
        token: &AuthorityToken,
        names: &[String],
    ) -> Result<(), CoordinationError> {
        let value = serde_json::to_vec(names).map_err(|e| CoordinationError::BadResponse {
            endpoint: String::new(),
            detail: format!("cannot encode the drained groups: {e}"),
        })?;
        let r = self.client.txn(
            &[Compare::Created(token.key.clone(), token.create_revision)],
            &[Op::Put(self.drained_key(), value, 0)],
            &[],
        )?;
        if !r.succeeded {
            return Err(CoordinationError::AuthorityLost {
                detail: "drained groups' write fenced off: the authority is no longer ours".into(),
            });
        }
        Ok(())
    }

    /// Read a group's view from etcd (`None`: never written); later saves
    /// compare against what this read.
    pub fn load(&mut self, group: &str) -> Result<Option<GroupState>, CoordinationError> {
        let (_, kv) = self.client.get(&self.key(group))?;
        let known = self.decode(group, kv.as_ref())?;
        self.known.insert(group.to_string(), known.clone());
        Ok(known.view)
    }

    fn decode(&self, group: &str, kv: Option<&KeyValue>) -> Result<Known, CoordinationError> {
        let Some(kv) = kv else {
            return Ok(Known {
                mod_revision: 0,
                view: None,
            });
        };
        let view: GroupState =
            serde_json::from_slice(&kv.value).map_err(|e| CoordinationError::BadResponse {
                endpoint: String::from_utf8_lossy(&self.key(group)).into_owned(),
                detail: format!("the stored value is not a group view: {e}"),
            })?;
        Ok(Known {
            mod_revision: kv.mod_revision,
            view: Some(view),
        })
    }

    /// Store `view` as its group's view, if `token` still holds the
    /// authority, the stored view is the one last read, and its epoch is
    /// newer (or the view identical). On a conflict the store is re-read,
    /// so the caller can look at [`ViewStore::load`]'s answer and decide.
    pub fn save(
        &mut self,
        token: &AuthorityToken,
        view: &GroupState,
    ) -> Result<Saved, CoordinationError> {
        let known = match self.known.get(&view.name) {
            Some(k) => k.clone(),
            None => {
                self.load(&view.name)?;
                self.known.get(&view.name).cloned().unwrap_or(Known {
                    mod_revision: 0,
                    view: None,
                })
            }
        };
        if let Some(stored) = &known.view {
            if stored == view {
                return Ok(Saved::Unchanged);
            }
            if stored.epoch >= view.epoch {
                return Err(CoordinationError::StaleEpoch {
                    group: view.name.clone(),
                    stored: stored.epoch,
                    offered: view.epoch,
                });
            }
        }
        let key = self.key(&view.name);
        let value = serde_json::to_vec(view).map_err(|e| CoordinationError::BadResponse {
            endpoint: String::new(),
            detail: format!("cannot encode the view: {e}"),
        })?;
        let r = self.client.txn(
            &[
                Compare::Created(token.key.clone(), token.create_revision),
                Compare::Modified(key.clone(), known.mod_revision),
            ],
            &[Op::Put(key.clone(), value, 0)],
            &[Op::Range(token.key.clone()), Op::Range(key.clone())],
        )?;
        if r.succeeded {
            self.known.insert(
                view.name.clone(),
                Known {
                    mod_revision: r.revision,
                    view: Some(view.clone()),
                },
            );
            return Ok(Saved::Written(r.revision));
        }
        let (authority, stored) = match r.responses.as_slice() {
            [OpResult::Range(a), OpResult::Range(v)] => (a, v),
            _ => {
                self.known.remove(&view.name);
                return Err(CoordinationError::Conflict {
                    key: String::from_utf8_lossy(&key).into_owned(),
                });
            }
        };
        match self.decode(&view.name, stored.as_ref()) {
            Ok(k) => {
                self.known.insert(view.name.clone(), k);
            }
            Err(_) => {
                self.known.remove(&view.name);
            }
        }
        let ours = authority
            .as_ref()
            .is_some_and(|a| a.create_revision == token.create_revision);
        if ours && self.known.get(&view.name).and_then(|k| k.view.as_ref()) == Some(view) {
            // A retry of a write whose answer was lost, and it had landed.
            return Ok(Saved::Unchanged);
        }
        match authority {
            Some(a) if a.create_revision == token.create_revision => {
                Err(CoordinationError::Conflict {
                    key: String::from_utf8_lossy(&key).into_owned(),
                })
            }
            Some(a) => Err(CoordinationError::AuthorityLost {
                detail: format!(
                    "view write fenced off: the authority is now {:?}",
                    String::from_utf8_lossy(&a.value)
                ),
            }),
            None => Err(CoordinationError::AuthorityLost {
                detail: "view write fenced off: no authority holds the key".into(),
            }),
        }
    }
}

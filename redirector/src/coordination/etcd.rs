//! An etcd v3 client over its JSON gateway (`/v3/...`, etcd 3.4 and
//! later): keys, transactions, leases and status, without protobuf or
//! gRPC. Every call is blocking and bounded by the client's timeout per
//! endpoint tried.

use std::time::Duration;

use serde_json::{json, Value};

use super::base64;
use super::error::CoordinationError;
use super::http::{self, Endpoint, HttpFailure};

/// Largest answer read from etcd.
pub const MAX_RESPONSE: usize = 1 << 20;

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// Revision of the key's creation (0: absent).
    pub create_revision: i64,
    /// Revision of its last change.
    pub mod_revision: i64,
    /// Changes since its creation.
    pub version: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

/// A transaction's guard: one revision of one key must equal a value.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's `create_revision` equals this (0: the key is absent).
    Created(Vec<u8>, i64),
    /// The key's `mod_revision` equals this (0: the key is absent).
    Modified(Vec<u8>, i64),
}

/// One operation of a transaction branch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Read one key.
    Range(Vec<u8>),
    /// Write a key, attached to a lease (0: none).
    Put(Vec<u8>, Vec<u8>, i64),
    /// Delete one key.
    Delete(Vec<u8>),
}

/// What one operation of the branch taken returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The key read, if present.
    Range(Option<KeyValue>),
    /// A put or delete was applied.
    Done,
}

/// A transaction's outcome.
#[derive(Debug, Clone)]
pub struct TxnResult {
    /// Every compare held and the success branch ran.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// One result per operation of the branch that ran.
    pub responses: Vec<OpResult>,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: i64,
    /// Its time to live in seconds, as etcd granted it.
    pub ttl_s: i64,
}

/// The answering member's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The endpoint that answered.
    pub endpoint: String,
    /// Its etcd version.
    pub version: String,
    /// The cluster's leader as this member sees it (0: none).
    pub leader: u64,
    /// The store's revision.
    pub revision: i64,
}

/// Whether a request may be sent again to the next endpoint after it may
/// have reached one: only reads may, so a write is never applied twice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Read,
    Write,
}

/// A client for an etcd cluster: the endpoints are tried in turn.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
}

fn int(v: &Value, field: &str) -> i64 {
    match &v[field] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn uint(v: &Value, field: &str) -> u64 {
    match &v[field] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: &Value, field: &str) -> Option<Vec<u8>> {
    match &v[field] {
        Value::Null => Some(Vec::new()),
        Value::String(s) => base64::decode(s),
        _ => None,
    }
}

fn key_value(v: &Value) -> Option<KeyValue> {
    Some(KeyValue {
        key: bytes(v, "key")?,
        value: bytes(v, "value")?,
        create_revision: int(v, "create_revision"),
        mod_revision: int(v, "mod_revision"),
        version: int(v, "version"),
        lease: int(v, "lease"),
    })
}

fn first_kv(range: &Value) -> Result<Option<KeyValue>, String> {
    match range["kvs"].as_array().and_then(|a| a.first()) {
        None => Ok(None),
        Some(kv) => key_value(kv)
            .map(Some)
            .ok_or_else(|| "a key or value is not base64".to_string()),
    }
}

fn compare_json(c: &Compare) -> Value {
    match c {
        Compare::Created(key, rev) => json!({"key": base64::encode(key), "target": "CREATE",
            "result": "EQUAL", "create_revision": rev.to_string()}),
        Compare::Modified(key, rev) => json!({"key": base64::encode(key), "target": "MOD",
            "result": "EQUAL", "mod_revision": rev.to_string()}),
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Range(key) => json!({"request_range": {"key": base64::encode(key)}}),
        Op::Put(key, value, lease) => json!({"request_put": {"key": base64::encode(key),
            "value": base64::encode(value), "lease": lease.to_string()}}),
        Op::Delete(key) => json!({"request_delete_range": {"key": base64::encode(key)}}),
    }
}

impl EtcdClient {
    /// A client for these `http://host:port` URLs; each request waits at
    /// most `timeout` per endpoint tried.
    pub fn new(urls: &[String], timeout: Duration) -> Result<EtcdClient, String> {
        if urls.is_empty() {
            return Err("at least one etcd endpoint is needed".into());
        }
        let endpoints = urls
            .iter()
            .map(|u| Endpoint::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EtcdClient { endpoints, timeout })
    }

    /// POST to each endpoint in turn until one answers with JSON.
    fn call(&self, path: &str, body: &Value, retry: Retry) -> Result<Value, CoordinationError> {
        let body = body.to_string().into_bytes();
        let mut unreachable = Vec::new();
        let mut last = None;
        for ep in &self.endpoints {
            let endpoint = ep.url.clone();
            let failure = match http::post(ep, path, &body, self.timeout, MAX_RESPONSE) {
                Ok(r) => match serde_json::from_slice::<Value>(&r.body) {
                    Ok(v) if (200..300).contains(&r.status) => return Ok(v),
                    Ok(v) if v.get("error").is_some() || v.get("message").is_some() => {
                        let message = v["message"].as_str().or(v["error"].as_str());
                        CoordinationError::Rejected {
                            endpoint,
                            message: message.unwrap_or("no message").to_string(),
                        }
                    }
                    _ => CoordinationError::BadResponse {
                        endpoint,
                        detail: format!("HTTP {} to POST {path}, not etcd's JSON", r.status),
                    },
                },
                Err(HttpFailure::Connect(why)) => {
                    unreachable.push(format!("{endpoint}: {why}"));
                    continue;
                }
                Err(HttpFailure::Timeout) => CoordinationError::TimedOut {
                    endpoint,
                    after_ms: self.timeout.as_millis() as u64,
                },
                Err(HttpFailure::Io(why)) => CoordinationError::Unreachable {
                    detail: format!(
                        "{endpoint}: connection lost after the request was sent (a write's outcome is unknown): {why}"
                    ),
                },
                Err(HttpFailure::Malformed(detail)) => {
                    CoordinationError::BadResponse { endpoint, detail }
                }
            };
            if retry == Retry::Write {
                return Err(failure);
            }
            last = Some(failure);
        }
        Err(last.unwrap_or_else(|| CoordinationError::Unreachable {
            detail: unreachable.join("; "),
        }))
    }

    fn bad(&self, detail: impl Into<String>) -> CoordinationError {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.url.as_str()).collect();
        CoordinationError::BadResponse {
            endpoint: urls.join(", "),
            detail: detail.into(),
        }
    }

    /// Read one key: the store's revision and the key, if present.
    pub fn get(&self, key: &[u8]) -> Result<(i64, Option<KeyValue>), CoordinationError> {
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": base64::encode(key)}),
            Retry::Read,
        )?;
        let kv = first_kv(&v).map_err(|e| self.bad(e))?;
        Ok((int(&v["header"], "revision"), kv))
    }

    /// Write one key (attached to `lease` unless 0); the new revision.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, CoordinationError> {
        let body = json!({"key": base64::encode(key), "value": base64::encode(value),
            "lease": lease.to_string()});
        let v = self.call("/v3/kv/put", &body, Retry::Write)?;
        Ok(int(&v["header"], "revision"))
    }

    /// Run `success` if every compare holds, `failure` otherwise, atomically.
    pub fn txn(
        &self,
        compares: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, CoordinationError> {
        let body = json!({
            "compare": compares.iter().map(compare_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", &body, Retry::Write)?;
        let succeeded = v["succeeded"].as_bool().unwrap_or(false);
        let empty = Vec::new();
        let answers = v["responses"].as_array().unwrap_or(&empty);
        let mut responses = Vec::with_capacity(answers.len());
        for a in answers {
            if let Some(range) = a.get("response_range") {
                responses.push(OpResult::Range(first_kv(range).map_err(|e| self.bad(e))?));
            } else {
                responses.push(OpResult::Done);
            }
        }
        let branch = if succeeded {
            success.len()
        } else {
            failure.len()
        };
        if responses.len() != branch {
            return Err(self.bad(format!(
                "transaction answered {} results for {branch} operations",
                responses.len()
            )));
        }
        Ok(TxnResult {
            succeeded,
            revision: int(&v["header"], "revision"),
            responses,
        })
    }

    /// Grant a lease of `ttl_s` seconds (etcd may grant more).
    pub fn lease_grant(&self, ttl_s: i64) -> Result<Lease, CoordinationError> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl_s}), Retry::Write)?;
        let lease = Lease {
            id: int(&v, "ID"),
            ttl_s: int(&v, "TTL"),
        };
        if lease.id == 0 || lease.ttl_s <= 0 {
            let why = v["error"]
                .as_str()
                .unwrap_or("no lease id or TTL in the answer");
            return Err(self.bad(format!("lease grant: {why}")));
        }
        Ok(lease)
    }

    /// Renew a lease once: its remaining TTL in seconds, 0 when it has
    /// expired or never existed.
    pub fn lease_keepalive(&self, id: i64) -> Result<i64, CoordinationError> {
        let v = self.call(
            "/v3/lease/keepalive",
            &json!({"ID": id.to_string()}),
            Retry::Read,
        )?;
        if v.get("result").is_none() {
            let why = v["error"]["message"].as_str().unwrap_or("no result");
            return Err(self.bad(format!("lease keepalive: {why}")));
        }
        Ok(int(&v["result"], "TTL").max(0))
    }

    /// Revoke a lease, deleting its keys; a lease already gone is no error.
    pub fn lease_revoke(&self, id: i64) -> Result<(), CoordinationError> {
        match self.call(
            "/v3/lease/revoke",
            &json!({"ID": id.to_string()}),
            Retry::Read,
        ) {
            Ok(_) => Ok(()),
            Err(CoordinationError::Rejected { message, .. }) if message.contains("not found") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The status of the first member that answers.
    pub fn status(&self) -> Result<Status, CoordinationError> {
        let mut last = None;
        for ep in &self.endpoints {
            let one = EtcdClient {
                endpoints: vec![ep.clone()],
                timeout: self.timeout,
            };
            match one.call("/v3/maintenance/status", &json!({}), Retry::Read) {
                Ok(v) => {
                    return Ok(Status {
                        endpoint: ep.url.clone(),
                        version: v["version"].as_str().unwrap_or("").to_string(),
                        leader: uint(&v, "leader"),
                        revision: int(&v["header"], "revision"),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.bad("no endpoint configured")))
    }
}

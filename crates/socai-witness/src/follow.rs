//! A witness that follows logs itself (`socai witness serve --follow URL`): it reads a log's
//! latest checkpoint from its HTTP API, asks the log for a consistency proof from the size the
//! witness cosigned last, decides exactly as for an `add-checkpoint` request (the same lock, the
//! same state file, so pushes and follows of one log never disagree), and posts its cosignature
//! back to the log (`POST /v1/checkpoints/{size}/cosignatures`). The log's answers are
//! untrusted: the checkpoint must verify with the log's key the witness was given, and the
//! proof must hold against the witness's own record.

use std::sync::Arc;
use std::time::Duration;

use socai_chain::ConsistencyProof;
use socai_chain::cosign::{AddCheckpoint, note_origin};

use crate::witness::Witness;

/// Largest answer read from a followed log (a checkpoint with its cosignatures, a proof).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest one request to a followed log may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the log served at `api` (its base URL) until the task is dropped, looking every
/// `every`.
pub async fn follow(witness: Arc<Witness>, api: reqwest::Url, every: Duration) {
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot make an HTTP client: not following {api}");
            return;
        }
    };
    let mut follower = Follower { witness, api, http };
    let mut last_error: Option<String> = None;
    loop {
        match follower.step().await {
            Ok(Some(size)) => {
                tracing::info!(api = %follower.api, size, "cosigned a followed log's checkpoint and posted the cosignature");
                last_error = None;
            }
            Ok(None) => last_error = None,
            Err(e) => {
                // Each new error at warn; the same one again at debug: a log that stays away is
                // visible in the witness's log without flooding it, and a different failure
                // (a rollback after an outage) is never hidden.
                if last_error.as_deref() == Some(e.as_str()) {
                    tracing::debug!(api = %follower.api, error = %e, "following a log");
                } else {
                    tracing::warn!(api = %follower.api, error = %e, "following a log");
                }
                last_error = Some(e);
            }
        }
        tokio::time::sleep(every).await;
    }
}

struct Follower {
    witness: Arc<Witness>,
    api: reqwest::Url,
    http: reqwest::Client,
}

impl Follower {
    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        self.api
            .join(path)
            .map_err(|e| format!("{}{path}: {e}", self.api))
    }

    /// The body of a successful GET, at most [`MAX_ANSWER_BYTES`] (the log is not trusted).
    async fn get(&self, url: reqwest::Url) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::collector::causes(&e)))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "GET {url} answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(format!(
                "GET {url} answered more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading {url}: {}", crate::collector::causes(&e)))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "GET {url} answered more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        Ok(bytes.to_vec())
    }

    /// One look at the log: Ok(Some(size)) when a new cosignature was posted.
    async fn step(&mut self) -> Result<Option<u64>, String> {
        let note = String::from_utf8(self.get(self.url("checkpoint")?).await?)
            .map_err(|_| "the log's checkpoint is not UTF-8 text".to_string())?;
        let origin = note_origin(&note).unwrap_or_default().to_owned();
        let Some(log) = self.witness.log(&origin) else {
            return Err(format!(
                "{} serves the checkpoints of {origin:?}, which this witness does not follow: give it that log's key with --log",
                self.api
            ));
        };
        let signed = log
            .verify(&note)
            .map_err(|e| format!("the log's checkpoint does not verify with its key: {e}"))?;
        let size = signed.checkpoint.size;
        let held = self.witness.held(&origin);
        let old = held.as_ref().map_or(0, |h| h.size);
        if size < old {
            return Err(format!(
                "the log serves size {size}, below the {old} this witness cosigned: a rollback (or another log signing with its key); refused"
            ));
        }
        // The log serves the cosignatures it holds with its checkpoint: nothing to do when ours
        // is among them (and after the log lost it, in a crash, it is posted again).
        let ours = socai_chain::cosign::CosignatureVerifier::from_vkey(&self.witness.vkey())
            .map_err(|e| format!("this witness's own key: {e}"))?;
        let body = socai_chain::cosign::note_body(&note).unwrap_or_default();
        if socai_chain::cosign::signature_lines(&note)
            .iter()
            .any(|line| matches!(ours.verify_line(body, line), Ok(Some(_))))
        {
            return Ok(None);
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let mut url = self.url("v1/proofs/consistency")?;
            url.query_pairs_mut()
                .append_pair("from", &old.to_string())
                .append_pair("to", &size.to_string());
            let proof: ConsistencyProof = serde_json::from_slice(&self.get(url).await?)
                .map_err(|e| format!("the log's consistency proof is not proof JSON: {e}"))?;
            proof.path
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            note,
        }
        .body();
        let witness = self.witness.clone();
        let now = crate::witness::now_secs();
        let (status, answer) =
            tokio::task::spawn_blocking(move || witness.add_checkpoint(body.as_bytes(), now))
                .await
                .map_err(|e| format!("the witness failed: {e}"))?;
        if status != 200 {
            return Err(format!(
                "the log's checkpoint of size {size} is refused ({status}: {})",
                answer.trim()
            ));
        }
        let url = self.url(&format!("v1/checkpoints/{size}/cosignatures"))?;
        let response = self
            .http
            .post(url.clone())
            .body(answer)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", crate::collector::causes(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let hint = if status.as_u16() == 403
                || (status.as_u16() == 404 && text.contains("no witnesses configured"))
            {
                format!(
                    "; the log must list this witness: [[witnesses]] vkey = \"{}\" (no url) in its socai.toml",
                    self.witness.vkey()
                )
            } else {
                String::new()
            };
            return Err(format!(
                "cosigned size {size}, but the log took no cosignature: POST {url} answered {status}: {}{hint}",
                text.chars().take(300).collect::<String>()
            ));
        }
        Ok(Some(size))
    }
}

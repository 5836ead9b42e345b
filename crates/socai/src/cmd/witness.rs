//! `socai witness init|serve|status`: a witness that cosigns logs' checkpoints (C2SP
//! tlog-witness; the logic is `socai_witness::witness`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use socai_chain::CheckpointVerifier;
use socai_witness::Witness;

use crate::cli::WitnessAction;
use crate::output::emit;

pub fn run(action: WitnessAction) -> anyhow::Result<()> {
    match action {
        WitnessAction::Init { dir, name } => {
            let vkey = socai_witness::witness::init(&dir, &name)?;
            emit(&json!({"dir": dir, "name": name, "vkey": vkey}), || {
                format!(
                    "witness {name} created in {}\nverifier key (publish it; give it to each log as [[witnesses]] vkey): {vkey}\nits private key is {}: back it up, never share it; never restore the directory's logs/ from an older copy (what it holds stops the witness cosigning a fork)",
                    dir.display(),
                    socai_witness::witness::key_path(&dir).display()
                )
            });
            Ok(())
        }
        WitnessAction::Serve {
            dir,
            logs,
            listen,
            follow,
            follow_every,
            for_seconds,
        } => serve(
            &dir,
            &logs,
            &listen,
            &follow,
            Duration::from_secs(follow_every),
            for_seconds,
        ),
        WitnessAction::Status { dir, logs } => {
            let witness = Witness::inspect(&dir, read_logs(&logs)?)?;
            let status = witness.status();
            emit(
                &json!({"name": witness.name(), "vkey": witness.vkey(), "logs": status}),
                || {
                    let mut out = format!("witness {}\n", witness.name());
                    for log in &status {
                        match log.size {
                            Some(size) => out.push_str(&format!(
                                "{}: cosigned up to size {size} (root {})\n",
                                log.origin,
                                log.root.as_deref().unwrap_or("")
                            )),
                            None => {
                                out.push_str(&format!("{}: nothing cosigned yet\n", log.origin))
                            }
                        }
                    }
                    out.trim_end().to_owned()
                },
            );
            Ok(())
        }
    }
}

fn read_logs(files: &[PathBuf]) -> anyhow::Result<Vec<CheckpointVerifier>> {
    files
        .iter()
        .map(|path| super::audit::read_vkey(path))
        .collect()
}

fn serve(
    dir: &Path,
    logs: &[PathBuf],
    listen: &str,
    follow: &[String],
    every: Duration,
    for_seconds: Option<u64>,
) -> anyhow::Result<()> {
    let witness = Arc::new(Witness::open(dir, read_logs(logs)?)?);
    let followed = follow
        .iter()
        .map(|api| {
            let mut url = reqwest::Url::parse(api).with_context(|| {
                format!("--follow {api:?} is not a URL; give the log's API base, e.g. https://ledger.example.vn/")
            })?;
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            Ok(url)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rt = super::nats::runtime()?;
    rt.block_on(async {
        let shutdown = super::nats::shutdown_signal(for_seconds.map(Duration::from_secs))?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}; choose another address with --listen ADDR")
        })?;
        let addr = listener.local_addr()?;
        for log in witness.status() {
            tracing::info!(origin = %log.origin, cosigned_size = log.size, "following log");
        }
        tracing::info!(addr = %addr, name = %witness.name(), vkey = %witness.vkey(), "witness listening on http://{addr}");
        let _following: Vec<_> = followed
            .into_iter()
            .map(|api| {
                tracing::info!(api = %api, every_s = every.as_secs(), "following a log");
                AbortOnDrop(tokio::spawn(socai_witness::follow::follow(
                    witness.clone(),
                    api,
                    every,
                )))
            })
            .collect();
        axum::serve(listener, witness.clone().router())
            .with_graceful_shutdown(shutdown)
            .await
            .context("the witness's HTTP server failed")
    })?;
    tracing::info!("witness stopped");
    Ok(())
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

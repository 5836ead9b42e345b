//! `<data-dir>/socai.toml`: the operator's one config file. Every key is optional.
//!
//! ```toml
//! max_event_bytes = 65536          # larger events are rejected as `oversized`
//! import_batch_events = 1000       # events per atomic commit during import
//! checkpoint_every_events = 100000 # sign a checkpoint at least this often
//! ```

use anyhow::Context;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub max_event_bytes: usize,
    pub import_batch_events: usize,
    pub checkpoint_every_events: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_event_bytes: 64 * 1024,
            import_batch_events: 1000,
            checkpoint_every_events: 100_000,
        }
    }
}

pub const FILE_NAME: &str = "socai.toml";

impl Config {
    pub fn load(data_dir: &Path) -> anyhow::Result<Config> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let config: Config = toml::from_str(&text).with_context(|| {
                    format!(
                        "{}: invalid config; fix it or remove the file to use defaults",
                        path.display()
                    )
                })?;
                anyhow::ensure!(
                    config.import_batch_events >= 1,
                    "{}: import_batch_events must be at least 1",
                    path.display()
                );
                anyhow::ensure!(
                    config.max_event_bytes >= 256,
                    "{}: max_event_bytes must be at least 256",
                    path.display()
                );
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn default_text() -> &'static str {
        "# socai configuration; every key is optional\n\
         max_event_bytes = 65536          # larger events are rejected as `oversized`\n\
         import_batch_events = 1000       # events per atomic commit during import\n\
         checkpoint_every_events = 100000 # sign a checkpoint at least this often\n"
    }

    pub fn ledger(&self) -> socai_store::LedgerConfig {
        socai_store::LedgerConfig {
            checkpoint_every_events: self.checkpoint_every_events,
        }
    }

    pub fn limits(&self) -> socai_model::Limits {
        socai_model::Limits {
            max_event_bytes: self.max_event_bytes,
        }
    }
}

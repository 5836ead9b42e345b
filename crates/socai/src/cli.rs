//! The command line (clap derive). Global flags are accepted by every subcommand.

use clap::{Args, Parser, Subcommand};
use socai_client::publisher::{MAX_PING_INTERVAL, MIN_PING_INTERVAL, PING_INTERVAL};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "socai",
    version,
    about = "Sổ Cái: a tamper-evident, event-sourced ledger of public-service events"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory (store, keys, socai.toml)
    #[arg(
        long,
        global = true,
        env = "SOCAI_DATA_DIR",
        default_value = "./socai-data"
    )]
    pub data_dir: PathBuf,
    /// NATS server URL, or several separated by commas for a cluster (nats://a:4222,nats://b:4222): used by the NATS-facing commands
    #[arg(long, global = true, env = "SOCAI_NATS_URL")]
    pub nats: Option<String>,
    /// NATS user (an agency code for agencies, e.g. G09.20)
    #[arg(long, global = true, env = "SOCAI_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password
    #[arg(
        long,
        global = true,
        env = "SOCAI_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// Seconds between the PINGs a NATS connection sends a server it has read nothing from; the
    /// connection is dropped and made again (to another seed if one answers) after two go
    /// unanswered, so a frozen server or a dead network path is noticed within three times this.
    /// Raise it on a link so slow that one message can take longer than twice this to arrive.
    /// `socai bench` keeps the default: it runs its own nats-server on this machine
    #[arg(
        long,
        global = true,
        env = "SOCAI_NATS_PING_INTERVAL",
        value_name = "SECONDS",
        default_value_t = PING_INTERVAL.as_secs(),
        value_parser = clap::value_parser!(u64)
            .range(MIN_PING_INTERVAL.as_secs()..=MAX_PING_INTERVAL.as_secs())
    )]
    pub nats_ping_interval: u64,
    /// A running ledger's HTTP API (e.g. http://127.0.0.1:8080): proof, history, show, export,
    /// checkpoint --list, redact and verify then work against it instead of --data-dir
    #[arg(long, global = true, env = "SOCAI_API_URL")]
    pub api: Option<String>,
    /// Bearer token for --api (an auditor's, for personal data and redaction)
    #[arg(long, global = true, env = "SOCAI_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Machine-readable JSON output
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data dir: checkpoint signing key, verifier key (checkpoint.vkey), salt key, config
    Init {
        /// Log origin: the checkpoint's first line and the key name
        #[arg(long, default_value = "socai.example/ledger")]
        origin: String,
        /// For a ledger replica: copy the keys (checkpoint.key, checkpoint.vkey, salt.key) of
        /// this primary data dir instead of making new ones (the origin is the primary's)
        #[arg(long, value_name = "PRIMARY_DATA_DIR", conflicts_with = "origin")]
        keys_from: Option<PathBuf>,
    },
    /// Import events from a JSON Lines file (validates the whole file first; nothing half-written)
    Import {
        file: PathBuf,
        /// Events per atomic commit (default from socai.toml)
        #[arg(long)]
        batch_size: Option<usize>,
    },
    /// Verify the whole ledger: every entry (canonical form), link, stored Merkle hash, checkpoint
    /// signature and root, personal record, and the id and dossier indexes (with --api: a running
    /// ledger, from its C2SP tiles alone). Without --vkey only internal consistency is checked and
    /// the exit status is 5, never "ok"
    Verify {
        /// The log's published verifier key (checkpoint.vkey), obtained independently of the data
        /// dir: the only key a success is certified against (required with --api)
        #[arg(long)]
        vkey: Option<PathBuf>,
        /// Skip the id and dossier index check (on by default)
        #[arg(long)]
        no_indexes: bool,
        /// Worker threads (default: all cores)
        #[arg(long)]
        threads: Option<usize>,
        /// A signed checkpoint note you kept earlier (repeatable): the log must still match it
        #[arg(long = "checkpoint", value_name = "NOTE_FILE")]
        pinned: Vec<PathBuf>,
        /// A witness you trust (repeatable): its verifier key file (what `socai witness init`
        /// printed). With --api, the checkpoint verified is the newest one cosigned by
        /// --witnesses of them
        #[arg(long = "witness", value_name = "VKEY_FILE", requires = "vkey")]
        witnesses: Vec<PathBuf>,
        /// How many of the --witness keys must have cosigned (default: all of them)
        #[arg(long = "witnesses", value_name = "K", requires = "witnesses",
              value_parser = clap::value_parser!(u64).range(1..))]
        required_witnesses: Option<u64>,
    },
    /// Sign a checkpoint for the current head (if it moved), or list the signed ones
    Checkpoint {
        #[arg(long)]
        list: bool,
    },
    /// Inclusion and consistency proofs (JSON, the auditors' contract)
    Proof {
        #[command(subcommand)]
        kind: ProofKind,
    },
    /// Export entries [from, to) as a self-contained, offline-verifiable bundle
    Export {
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// End (exclusive); default: the latest signed checkpoint's size
        #[arg(long)]
        to: Option<u64>,
        /// Output file (default: standard output)
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Include personal data and salts (authorised auditors only)
        #[arg(long)]
        with_personal: bool,
    },
    /// Verify an exported bundle; needs no data dir
    VerifyBundle {
        file: PathBuf,
        /// The log's published verifier key (checkpoint.vkey): the bundle's own key is never trusted
        #[arg(long)]
        vkey: PathBuf,
    },
    /// A dossier's events in ledger order
    History { dossier: String },
    /// One entry, by event id or seq
    Show {
        /// Event id, or a seq number
        id_or_seq: String,
        /// Also print the personal data (authorised auditors only)
        #[arg(long)]
        personal: bool,
    },
    /// Erase an event's personal data (Decree 13/2023) and record the redaction in the ledger
    Redact {
        id: String,
        #[arg(long)]
        reason: String,
        /// Who authorised the redaction (with --api: the name of the --api-token's holder)
        #[arg(long, default_value = "operator")]
        by: String,
    },
    /// Bearer tokens for the HTTP API's auditor role
    Token {
        #[command(subcommand)]
        kind: TokenKind,
    },
    /// Write a realistic, deterministic workload of events as JSON Lines
    Simulate {
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Provinces in the simulated country: the first N of today's 34 (schemas/units/vn.json)
        #[arg(long, default_value_t = 34, value_parser = clap::value_parser!(u16).range(1..=34))]
        provinces: u16,
        /// Communes (People's Committees) per province that file dossiers; 0: all of them
        #[arg(long, default_value_t = 0)]
        communes_per_province: usize,
        /// Procedures each agency publishes before dossiers start
        #[arg(long, default_value_t = 20)]
        procedures_per_agency: usize,
        /// Output file (default: standard output)
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run the ledger writer: consume EVENTS, commit, ack; publish COMMITTED and checkpoints;
    /// serve the HTTP API (entries, proofs, tiles, metrics, health)
    Serve {
        /// Stop after this many seconds (default: run until SIGINT/SIGTERM)
        #[arg(long)]
        for_seconds: Option<u64>,
        /// HTTP API address (default: [http] listen in socai.toml, 127.0.0.1:8080); port 0 picks
        /// a free one, logged as `http api listening`
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// A witness to send every signed checkpoint to (repeatable, besides [[witnesses]] in
        /// socai.toml): its submission URL, '=', its verifier key text
        #[arg(long = "witness", value_name = "URL=VKEY")]
        witnesses: Vec<String>,
        /// Run as a ledger replica of the log ORIGIN (its checkpoints' first line): read the
        /// same EVENTS, send nothing, compare every checkpoint the primary publishes with this
        /// ledger and raise an alarm at the first differing size. The data dir needs the
        /// primary's keys (`socai init --keys-from`)
        #[arg(long, value_name = "ORIGIN", conflicts_with_all = ["promote", "replicas"])]
        replica_of: Option<String>,
        /// This replica's name, unique among the log's replicas, reported on
        /// dvc.ledger.replicas.<NAME> (letters, digits, - and _; required with --replica-of)
        #[arg(long, value_name = "NAME", requires = "replica_of")]
        replica_name: Option<String>,
        /// Make this replica the primary (once, after the primary has stopped for good): it
        /// takes over COMMITTED, checkpoints, receipts and erasure (README, "Ledger replicas")
        #[arg(long)]
        promote: bool,
        /// A replica of this ledger (repeatable, besides [ingest] replicas in socai.toml): an
        /// EVENTS copy of a redacted event is erased only once every one has read past it
        #[arg(long = "replica", value_name = "NAME")]
        replicas: Vec<String>,
    },
    /// A witness: cosigns the checkpoints of the logs it follows (C2SP tlog-witness), never two
    /// that are inconsistent with each other
    Witness {
        #[command(subcommand)]
        action: WitnessAction,
    },
    /// Publish events (or, with --format dvc-sync, the portal's dossier sync bodies) from a JSON
    /// Lines file to EVENTS (msg-id = event id, retried until stored) and wait for the ledger's
    /// signed receipts: each event is reported committed, already in the ledger (duplicate),
    /// rejected, or with no receipt (exit status 1 unless all are in the ledger)
    Publish {
        file: PathBuf,
        /// PubAcks awaited at once. With receipts most events await none (the receipt says
        /// more): each agency's first, one in 64 of each agency's (and the 64th plain publish in
        /// a row) and every re-publish do. 1 = every event awaits its PubAck in turn (strict
        /// order across connection and PubAck failures, not across a loss inside nats-server)
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Append every receipt received to FILE, one JSON per line (evidence of what the ledger
        /// accepted; `socai proof inclusion --receipt FILE --id ID` turns one into a proof)
        #[arg(long, value_name = "FILE", conflicts_with = "no_receipts")]
        receipts: Option<PathBuf>,
        /// Verify every receipt with the log's published verifier key (checkpoint.vkey); a
        /// receipt that does not verify is reported and answers nothing
        #[arg(long, value_name = "FILE", conflicts_with = "no_receipts")]
        vkey: Option<PathBuf>,
        /// Publish an event again when it has no receipt this long after its PubAck, or after
        /// it was sent when it awaited none (doubling at each re-publish, up to 300 s or this
        /// if longer)
        #[arg(long, value_name = "SECS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..))]
        receipt_timeout: u64,
        /// Report an event as "no receipt" this long after its first publish
        #[arg(long, value_name = "SECS", default_value_t = 600,
              value_parser = clap::value_parser!(u64).range(1..))]
        give_up_after: u64,
        /// Wait for PubAcks only (the stream holds the events; nothing is confirmed committed,
        /// and nats-server may lose what it has not synced yet)
        #[arg(long)]
        no_receipts: bool,
        /// What each line is: a socai event (`events`), or a body an agency system posts to the
        /// national portal (`dvc-sync`: DongBoHoSoMC or CapNhatTienDoHoSoMC, sent to
        /// dvc.sync.<agency>; the ledger turns it into events, see schemas/dvc-sync.md)
        #[arg(long, value_enum, default_value_t = PublishFormat::Events)]
        format: PublishFormat,
        /// With --format dvc-sync: the agency (MaDonVi) of bodies that carry no `madonvi`
        #[arg(long, value_name = "MADONVI")]
        agency: Option<String>,
    },
    /// Run a projection worker: fold COMMITTED into the metrics, publish them to the METRICS KV
    /// bucket and dvc.metrics.<metric>.<scope> (state in <data-dir>/metrics/<name>.state and its delta log <name>.state.log)
    Project {
        /// Worker name: its state file and its `_workers.<name>` key
        #[arg(long, default_value = "projector")]
        name: String,
        /// This worker's share of the scopes, INDEX/COUNT (0/2 and 1/2 for two workers)
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// Stop after this many seconds (default: run until SIGINT/SIGTERM)
        #[arg(long)]
        for_seconds: Option<u64>,
    },
    /// Metric values: the published ones (METRICS bucket) with --nats, else computed from the
    /// ledger in --data-dir
    Metrics {
        /// Only this metric (repeatable), e.g. on_time_rate
        #[arg(long)]
        metric: Vec<String>,
        /// national, province, agency, procedure, or one with its code: province:H01,
        /// agency:000.00.12.H01, procedure:1.004227
        #[arg(long)]
        scope: Option<String>,
        /// A window (day.2026-03-02, month.2026-03, quarter.2026-Q1, ytd.2026, rolling7), a
        /// kind (day, month, ...), or all
        #[arg(long)]
        window: Option<String>,
    },
    /// Audits against the ledger in --data-dir
    Audit {
        #[command(subcommand)]
        kind: AuditKind,
    },
    /// The demo, left running: nats-server (shipped config), the ledger (`socai serve`: writer,
    /// HTTP API, dashboard) and a projection worker on a persistent dir; a realistic workload,
    /// then a live trickle of events at office-hours pace until Ctrl-C (which stops everything
    /// cleanly; running it again resumes). With --once: every step (publish, verify, prove,
    /// export, redact, serve over HTTP) in a fresh temporary dir, then exit
    Demo {
        /// Run every step once in a fresh temporary dir and exit
        #[arg(long)]
        once: bool,
        /// Events of the initial workload, published on a dir's first run (with --once: the
        /// whole workload) [default: 200000]
        #[arg(long)]
        events: Option<u64>,
        /// The demo's dir: nats-server's store, the ledger's data dir, the projection worker's
        /// state, the simulator's position, the logs (default: <repo>/target/socai-demo;
        /// ignored with --once)
        #[arg(long, env = "SOCAI_DEMO_DIR", value_name = "PATH")]
        dir: Option<PathBuf>,
        /// Live trickle: events per second while the simulated offices are open (Mon-Fri
        /// 07:30-11:30, 13:30-17:00); the simulated clock is scaled to give it, and runs 12×
        /// faster outside office hours, where fewer events arrive
        #[arg(long, default_value_t = 5.0, conflicts_with = "once")]
        rate: f64,
        /// The HTTP API's (and dashboard's) address (default: a free port on 127.0.0.1)
        #[arg(long, value_name = "ADDR", conflicts_with = "once")]
        http: Option<String>,
    },
    /// Benchmarks, each printed beside a baseline measured in the same run
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProofKind {
    /// Prove one entry is in the tree of a signed checkpoint (or of a receipt's signed tree head)
    Inclusion {
        /// Event id (or AGENCY/ID); with --receipt, which of the receipt's events
        #[arg(long, conflicts_with = "seq", required_unless_present_any = ["seq", "receipt"])]
        id: Option<String>,
        #[arg(long)]
        seq: Option<u64>,
        /// Checkpoint tree size to prove against (default: the latest)
        #[arg(long, conflicts_with = "receipt")]
        tree_size: Option<u64>,
        /// A receipt (one JSON, or JSON Lines such as `socai publish --receipts`): prove its event
        /// at the receipt's tree size, under the receipt's signed tree head
        #[arg(long, value_name = "FILE", conflicts_with = "seq")]
        receipt: Option<PathBuf>,
    },
    /// Prove the tree at --to extends the tree at --from
    Consistency {
        #[arg(long)]
        from: u64,
        /// Default: the latest signed checkpoint's size
        #[arg(long)]
        to: Option<u64>,
    },
    /// Check a proof file (inclusion or consistency) offline
    Verify {
        file: PathBuf,
        /// Trusted verifier key (default: <data-dir>/checkpoint.vkey)
        #[arg(long)]
        vkey: Option<PathBuf>,
        /// Signed checkpoint notes whose roots a consistency proof must match (repeatable)
        #[arg(long = "checkpoint", value_name = "NOTE_FILE")]
        checkpoints: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WitnessAction {
    /// Create a witness directory with a fresh Ed25519 key; prints the verifier key to publish
    Init {
        /// The witness directory (its key and what it cosigned; back it up)
        #[arg(long)]
        dir: PathBuf,
        /// The witness's name, by convention a URL without scheme (e.g. witness.example.vn/w1)
        #[arg(long)]
        name: String,
    },
    /// Answer POST /add-checkpoint for the logs given, until SIGINT/SIGTERM
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// A log to follow: its verifier key file (checkpoint.vkey); repeatable
        #[arg(long = "log", value_name = "VKEY_FILE", required = true)]
        logs: Vec<PathBuf>,
        /// Address to listen on; port 0 picks a free one, logged as `witness listening`
        #[arg(long, default_value = "127.0.0.1:7380", value_name = "ADDR")]
        listen: String,
        /// Also follow a log itself over its HTTP API (repeatable): read its checkpoints, check
        /// them, and post the cosignatures back (the log lists this witness without a url)
        #[arg(long = "follow", value_name = "API_URL")]
        follow: Vec<String>,
        /// How often a followed log is looked at
        #[arg(long, value_name = "SECS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..))]
        follow_every: u64,
        /// Stop after this many seconds
        #[arg(long)]
        for_seconds: Option<u64>,
    },
    /// What the witness cosigned for each log
    Status {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "log", value_name = "VKEY_FILE", required = true)]
        logs: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenKind {
    /// Make a new random token: prints it once, and the [[http.tokens]] block for socai.toml
    New {
        /// Who holds it (recorded as `redacted_by` of their redactions)
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "auditor")]
        role: String,
    },
    /// The SHA-256 a token is configured by (reads the token from standard input)
    Hash,
}

#[derive(Subcommand, Debug)]
pub enum AuditKind {
    /// Recompute every metric from the ledger at a tree size and report every published value
    /// (METRICS bucket, via --nats) that differs, or whose root is not this ledger's
    Metrics {
        /// Tree size (default: the latest size a worker published at)
        #[arg(long)]
        at: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Every benchmark below, each as its own process; writes OUT/BENCHMARKS.md, OUT/benchmarks.json
    /// and PNG charts in OUT/benchmarks/ (about 10 minutes; --quick: smaller runs)
    All {
        /// Where the report goes
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        /// Smaller runs (a minute or two), for a first look
        #[arg(long)]
        quick: bool,
        /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH)
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Where to put the bench stores (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The national-year scale run (not in CI, tens of minutes): a ledger of --entries events
    /// (restart to ready, verify, proof latency, disk at that size), then --dossiers dossiers
    /// folded by one projection straight from the simulator (rate, memory)
    Scale {
        #[arg(long, default_value_t = 20_000_000)]
        entries: u64,
        #[arg(long, default_value_t = 30_000_000)]
        dossiers: u64,
        /// Dossiers the simulated country files a year (Vietnam: 30–60 million), so that the
        /// fold's --dossiers span the days they would
        #[arg(long, default_value_t = 30_000_000)]
        per_year: u64,
        /// Where to put the ledger (default: a temp dir); it needs ~0.6 KB per entry
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Append, verify, proof latency and disk use of the sled store
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Where to put the bench stores (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// End to end: publish → committed, fsynced, acked; beside a bare JetStream → sled pipeline
    Ingest {
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH)
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Where to put the bench stores (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Pairs of runs (bare pipeline, socai with receipts), alternating which goes first;
        /// the pair of the median ratio is reported, every pair printed
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=99))]
        rounds: u64,
    },
    /// JetStream replication and failover: ingest with receipts on one node (R1) beside the
    /// shipped 3-node cluster (R3), then EVENTS' leader killed --kills times under a trickle
    /// (kill → the ledger committing new events again, p50/p99)
    Cluster {
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
        kills: u64,
        /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH)
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Where to put the nodes' stores and the ledgers (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The HTTP API: proofs and entries p50/p99 with concurrent clients while ingest runs, beside
    /// the same requests against an idle ledger; SSE delivery to many subscribers
    Api {
        /// Ledger size before the run
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Concurrent HTTP clients
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Events per second published while the loaded run lasts
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Length of each run
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// SSE subscribers
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Requests per second (all clients together) of the open-loop runs (0: half of what
        /// the idle ledger answers with the clients in a closed loop)
        #[arg(long, default_value_t = 250.0)]
        request_rate: f64,
        /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH)
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Where to put the bench stores (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Projection rebuild rate from a ledger, and metric freshness (publish → subscriber sees
    /// the value) beside the bare NATS round trip
    Metrics {
        /// Ledger size for the rebuild
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Events per second published for the freshness run
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Length of the freshness run
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH)
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Where to put the bench stores (default: a temp dir)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// What the lines of `socai publish FILE` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishFormat {
    /// One socai event (schemas/envelope.json) per line.
    Events,
    /// One national-portal sync body per line (DongBoHoSoMC, CapNhatTienDoHoSoMC).
    DvcSync,
}

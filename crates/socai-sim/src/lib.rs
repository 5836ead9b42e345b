//! socai-sim: a deterministic generator of realistic dossier lifecycles.
//!
//! The stream starts with one `procedure.published` per (agency, procedure) pair, then interleaves
//! dossier lifecycles in event-time order: `dossier.submitted` (with personal data) →
//! `dossier.accepted` (due date from the legal duration) → sometimes a supplement request and
//! reply → processing steps → fee request and payment for fee-bearing procedures → sometimes a
//! deadline extension → `dossier.result_signed` → `dossier.resolved` → `dossier.result_returned`
//! → sometimes `dossier.rated`; a few dossiers are refused, withdrawn or stopped instead.
//!
//! Times are in +07:00; agency actions fall in office hours (Mon-Fri 07:30-11:30, 13:30-17:00),
//! online submissions and payments also outside them. Every event is valid against the schemas
//! in `schemas/` (the tests check it). The set of open dossiers is bounded by
//! [`OPEN_DOSSIERS_MAX`]: an infinite stream runs in bounded memory.
//!
//! The country is today's: the 34 provinces of `schemas/units/vn.json` (`socai_metrics::units`),
//! in GSO order, each with its departments, its police and its communes' People's Committees.
//! Agency and procedure codes follow the national formats but are illustrative (the scheme is
//! described in `src/catalogue.rs`): provincial departments `000.00.<dd>.H<nn>`, the provincial
//! police `G09.<nn>`, communes the `agency` code of the units file (`000.<cc>.<dd>.H<nn>`).
//! Citizen ids and addresses use the provinces' GSO codes and the communes' names. Event ids are
//! ULID-shaped: 26 Crockford base32 characters, the event time in milliseconds first, unique
//! within a stream.

mod calendar;
mod catalogue;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use socai_model::Event;

use crate::calendar::{
    WORKING_DAY_SECS, add_working_secs, close_after_working_days, is_working_time,
};
use crate::catalogue::{
    AgencyKind, DEPARTMENTS, Duration, Procedure, SYNTHETIC_WEIGHT, ServiceLevel,
};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Number of provinces: the first N of today's 34, in GSO order (0 counts as 1, more than
    /// 34 as 34).
    pub provinces: usize,
    /// Communes per province (their People's Committees), the first by ward code; 0 = all of
    /// them (the default: 3,321 in the whole country).
    pub communes_per_province: usize,
    /// Procedures per agency: a department's listed ones, then synthetic ones; a commune runs
    /// only the listed commune procedures (at most 11).
    pub procedures_per_agency: usize,
    /// First event time (RFC 3339, +07:00).
    pub start: String,
    /// Arrival-rate multiplier (0 counts as 1). At 1 the whole country files about 0.55 million
    /// dossiers a year (6 per agency-equivalent per working day); Vietnam's 30–60 million a
    /// year is about 55–110. Dossiers open at once may grow to `scale` × [`OPEN_DOSSIERS_MAX`].
    pub scale: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            provinces: 34,
            communes_per_province: 0,
            procedures_per_agency: 20,
            start: "2026-01-05T08:00:00+07:00".into(),
            scale: 1,
        }
    }
}

/// Most dossiers in flight at once (times [`SimConfig::scale`]). A submission arriving while this many are open is turned
/// away (no event), so memory stays bounded however long the stream runs.
pub const OPEN_DOSSIERS_MAX: usize = 1 << 16;

/// Agencies a config simulates: per province its departments and police, then its communes.
pub fn agency_count(config: &SimConfig) -> usize {
    layout(config).agencies.len()
}

/// The `procedure.published` events that open a config's stream: one per (agency, procedure)
/// pair. Equals [`Generator::catalogue_len`].
pub fn catalogue_len(config: &SimConfig) -> usize {
    let per_agency = config.procedures_per_agency.max(1);
    layout(config)
        .agencies
        .iter()
        .map(|a| a.kind.offered(per_agency))
        .sum()
}

/// Average submissions per working day per department (and the police), and per province for
/// all its communes together twice that ([`COMMUNES_SHARE`]): 48 a province, about 1,600 a
/// working day for the 34 provinces, some 10,000 of them open at a time.
const DOSSIERS_PER_AGENCY_PER_WORKING_DAY: f64 = 6.0;
/// A province's communes together receive as many dossiers as this many departments (each
/// commune its share): the weight two communes each had when the simulator had two a province,
/// so a small config keeps its mix and a whole province's communes do not drown its departments.
const COMMUNES_SHARE: u64 = 2;
/// Scale of offering weights (procedure weight × this for a department), so a commune's share
/// of [`COMMUNES_SHARE`] stays an integer.
const AGENCY_WEIGHT: u64 = 1_000;
/// Share of the working-hours submission rate that continues at night and at weekends (online).
const OFF_HOURS_RATE_SHARE: f64 = 0.08;

/// Infinite, deterministic stream of valid events: procedure catalogue first, then interleaved
/// dossier lifecycles. Same config → same events, byte for byte.
pub struct Generator {
    rng: StdRng,
    provinces: Vec<Province>,
    /// GSO codes of all current provinces (birth provinces of citizen ids).
    gso_codes: Vec<u16>,
    agencies: Vec<Agency>,
    offerings: Vec<Offering>,
    /// Cumulative offering weights, for picking the procedure of a new dossier.
    offering_weights: Vec<u64>,
    /// Next catalogue event (index into `offerings`) while the catalogue is being published.
    catalogue_next: usize,
    start: i64,
    /// Events emitted so far (ids are derived from it).
    emitted: u64,
    id_key: u64,
    id_tag: u16,
    /// Submissions per working second, office hours.
    arrival_rate: f64,
    next_arrival: i64,
    /// Open dossiers by the time of their next event; ties broken by insertion order.
    agenda: BinaryHeap<Reverse<(i64, u64, u32)>>,
    agenda_order: u64,
    slots: Vec<Option<Dossier>>,
    free_slots: Vec<u32>,
    open: usize,
    open_max: usize,
    turned_away: u64,
}

/// A simulated province.
struct Province {
    /// `Hnn`.
    token: &'static str,
    gso: u16,
    /// As written in an address: "tỉnh Tuyên Quang", "thành phố Hà Nội".
    address_name: String,
    /// All its communes as written in an address ("phường Ba Đình", "xã Hồ Thầu"), by code.
    communes: Vec<String>,
}

/// An agency of the simulated country, before the generator draws its certificates.
struct AgencySpec {
    code: String,
    kind: AgencyKind,
    /// Index into the layout's provinces.
    province: u32,
    /// A commune's index among its province's communes.
    commune: Option<u32>,
    /// Weight of each of its procedures, per unit of procedure weight.
    weight: u64,
}

struct Layout {
    provinces: Vec<Province>,
    agencies: Vec<AgencySpec>,
}

/// The simulated country of a config: the first provinces of the units file, each with its
/// departments, police and first communes.
fn layout(config: &SimConfig) -> Layout {
    let units = socai_metrics::units();
    let mut provinces = Vec::new();
    let mut agencies = Vec::new();
    for (index, unit) in units.provinces().take(config.provinces.max(1)).enumerate() {
        let communes: Vec<&socai_metrics::Unit> = units.communes_of(&unit.code).collect();
        let simulated = match config.communes_per_province {
            0 => communes.len(),
            n => n.min(communes.len()),
        };
        provinces.push(Province {
            token: &unit.code,
            gso: unit.gso.parse().expect("a province's GSO code is a number"),
            address_name: address_form(&unit.name),
            communes: communes.iter().map(|c| address_form(&c.name)).collect(),
        });
        for kind in DEPARTMENTS {
            agencies.push(AgencySpec {
                code: kind.code(&unit.code).expect("a department has a code"),
                kind,
                province: index as u32,
                commune: None,
                weight: AGENCY_WEIGHT,
            });
        }
        let commune_weight = (COMMUNES_SHARE * AGENCY_WEIGHT / simulated.max(1) as u64).max(1);
        for (nth, commune) in communes[..simulated].iter().enumerate() {
            agencies.push(AgencySpec {
                code: commune
                    .agency
                    .clone()
                    .expect("a commune of the units file has an agency code"),
                kind: AgencyKind::Commune,
                province: index as u32,
                commune: Some(nth as u32),
                weight: commune_weight,
            });
        }
    }
    Layout {
        provinces,
        agencies,
    }
}

/// "Tỉnh Tuyên Quang" → "tỉnh Tuyên Quang", "Phường Ba Đình" → "phường Ba Đình".
fn address_form(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

struct Agency {
    code: String,
    kind: AgencyKind,
    province: u32,
    commune: Option<u32>,
    /// Serial numbers of the agency's two signing certificates (one per signer).
    serials: [String; 2],
    algorithm: &'static str,
    dossiers: u64,
    results: u64,
    receipts: u64,
}

struct Offering {
    agency: u32,
    /// Relative weight among all offerings: the procedure's × its agency's.
    weight: u64,
    code: String,
    name: String,
    /// What its fee is called on a payment request ("Lệ phí ...").
    fee_name: String,
    procedure: Procedure,
}

struct Dossier {
    offering: u32,
    code: String,
    /// Remaining planned events, latest first (popped from the end).
    plan: Vec<Planned>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Channel {
    Online,
    Counter,
    Postal,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Online => "online",
            Channel::Counter => "counter",
            Channel::Postal => "postal",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    at: i64,
    step: Step,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Refused {
        reason: u8,
    },
    Accepted {
        due: i64,
        digitized: bool,
        reused: bool,
    },
    Withdrawn {
        reason: u8,
    },
    Stopped {
        reason: u8,
    },
    SupplementRequested {
        reason: u8,
    },
    SupplementReceived {
        new_due: Option<i64>,
    },
    Processing {
        no: u8,
        step: u8,
        unit: u8,
        due: i64,
    },
    FeeRequested,
    FeePaid {
        online: bool,
        gateway: u8,
    },
    DeadlineExtended {
        new_due: i64,
        reason: u8,
    },
    ResultSigned {
        signer: u8,
    },
    Resolved {
        electronic: bool,
        denied: bool,
    },
    Returned {
        method: u8,
    },
    Rated {
        satisfied: bool,
        level: u8,
    },
}

const RETURN_METHODS: [&str; 3] = ["electronic", "counter", "postal"];

impl Generator {
    /// # Panics
    /// If `config.start` is not an RFC 3339 date-time with an offset.
    pub fn new(config: SimConfig) -> Generator {
        let start = config
            .start
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|err| panic!("invalid simulation start {:?}: {err}", config.start))
            .as_second();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let per_agency = config.procedures_per_agency.max(1);
        let Layout {
            provinces,
            agencies: specs,
        } = layout(&config);
        let mut agencies = Vec::with_capacity(specs.len());
        let mut offerings = Vec::new();
        for spec in specs {
            let serial = |rng: &mut StdRng| {
                format!("{:016X}{:016X}", rng.r#gen::<u64>(), rng.r#gen::<u64>())
            };
            let listed = spec.kind.procedures();
            for j in 0..spec.kind.offered(per_agency) {
                let (code, name, procedure) = match listed.get(j) {
                    Some(p) => (p.code.to_owned(), p.name.to_owned(), *p),
                    None => synthetic_procedure(spec.kind, j),
                };
                let fee_name = fee_name(&name);
                offerings.push(Offering {
                    agency: agencies.len() as u32,
                    weight: u64::from(procedure.weight) * spec.weight,
                    code,
                    name,
                    fee_name,
                    procedure,
                });
            }
            agencies.push(Agency {
                code: spec.code,
                kind: spec.kind,
                province: spec.province,
                commune: spec.commune,
                serials: [serial(&mut rng), serial(&mut rng)],
                algorithm: if rng.gen_bool(0.1) {
                    "ECDSA-SHA256"
                } else {
                    "RSA-SHA256"
                },
                dossiers: 0,
                results: 0,
                receipts: 0,
            });
        }
        let mut total = 0u64;
        let offering_weights = offerings
            .iter()
            .map(|o| {
                total += o.weight;
                total
            })
            .collect();
        // Departments and police count one each, a province's communes COMMUNES_SHARE together.
        let agency_equivalents = provinces.len() * (DEPARTMENTS.len() + COMMUNES_SHARE as usize);
        let gso_codes = socai_metrics::units()
            .provinces()
            .map(|p| p.gso.parse().expect("a province's GSO code is a number"))
            .collect();
        let scale = config.scale.max(1);
        let arrival_rate = agency_equivalents as f64 * DOSSIERS_PER_AGENCY_PER_WORKING_DAY
            / WORKING_DAY_SECS as f64
            * f64::from(scale);
        let id_key = rng.r#gen::<u64>();
        let id_tag = rng.r#gen::<u16>();
        let mut generator = Generator {
            rng,
            provinces,
            gso_codes,
            agencies,
            offerings,
            offering_weights,
            catalogue_next: 0,
            start,
            emitted: 0,
            id_key,
            id_tag,
            arrival_rate,
            next_arrival: start,
            agenda: BinaryHeap::new(),
            agenda_order: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            open: 0,
            open_max: OPEN_DOSSIERS_MAX * scale as usize,
            turned_away: 0,
        };
        generator.next_arrival = generator.arrival_after(start);
        generator
    }

    /// Dossiers currently in flight (at most [`OPEN_DOSSIERS_MAX`]).
    pub fn open_dossiers(&self) -> usize {
        self.open
    }

    /// Submissions turned away so far because [`OPEN_DOSSIERS_MAX`] dossiers were open.
    pub fn turned_away(&self) -> u64 {
        self.turned_away
    }

    /// Number of (agency, procedure) pairs, i.e. of `procedure.published` events that open the
    /// stream.
    pub fn catalogue_len(&self) -> usize {
        self.offerings.len()
    }

    /// Time of the next submission after `t`: exponential gaps, fewer outside office hours.
    fn arrival_after(&mut self, t: i64) -> i64 {
        let rate = if is_working_time(t) {
            self.arrival_rate
        } else {
            self.arrival_rate * OFF_HOURS_RATE_SHARE
        };
        let uniform: f64 = self.rng.r#gen::<f64>();
        let gap = -(1.0 - uniform).ln() / rate;
        t + (gap as i64).clamp(1, 7 * 86_400)
    }

    fn pick_offering(&mut self) -> usize {
        let total = *self.offering_weights.last().expect("at least one offering");
        let ticket = self.rng.gen_range(0..total);
        self.offering_weights
            .partition_point(|cumulative| *cumulative <= ticket)
    }

    fn next_id(&mut self, at: i64) -> String {
        let counter = self.emitted;
        self.emitted += 1;
        event_id(at, self.id_tag, mix64(counter ^ self.id_key))
    }

    fn event(
        &mut self,
        offering: usize,
        dossier: String,
        at: i64,
        event_type: &str,
        data: Map<String, Value>,
    ) -> Event {
        let id = self.next_id(at);
        let offering = &self.offerings[offering];
        Event {
            id,
            event_type: event_type.to_owned(),
            agency: self.agencies[offering.agency as usize].code.clone(),
            procedure: offering.code.clone(),
            dossier,
            occurred_at: calendar::format_local(at),
            schema: socai_model::SCHEMA_VERSION,
            data: Value::Object(data),
            personal: None,
        }
    }

    fn published(&mut self, index: usize) -> Event {
        let offering = &self.offerings[index];
        let p = &offering.procedure;
        let mut data = Map::new();
        data.insert("name".into(), offering.name.clone().into());
        data.insert("field".into(), p.field.into());
        data.insert("service_level".into(), p.level.as_str().into());
        data.insert("fee_bearing".into(), (p.fee_vnd > 0).into());
        data.insert(
            "result_kind".into(),
            if p.result.is_some() {
                "document"
            } else {
                "none"
            }
            .into(),
        );
        let (value, unit) = match p.duration {
            Duration::Hours(h) => (h, "hours"),
            Duration::WorkingDays(d) => (d, "working_days"),
        };
        let mut duration = Map::new();
        duration.insert("value".into(), value.into());
        duration.insert("unit".into(), unit.into());
        data.insert("legal_duration".into(), Value::Object(duration));
        let code = offering.code.clone();
        self.event(index, code, self.start, "procedure.published", data)
    }

    /// A new dossier at `t`, or `None` if none arrives (office closed for an offline procedure,
    /// or too many dossiers open).
    fn arrive(&mut self, t: i64) -> Option<Event> {
        if self.open >= self.open_max {
            self.turned_away += 1;
            return None;
        }
        let offering_index = self.pick_offering();
        let procedure = self.offerings[offering_index].procedure;
        let channel = if is_working_time(t) {
            let online = match procedure.level {
                ServiceLevel::FullOnline => 0.70,
                ServiceLevel::PartialOnline => 0.48,
                ServiceLevel::Offline => 0.0,
            };
            let draw: f64 = self.rng.r#gen();
            if draw < online {
                Channel::Online
            } else if draw < online + (1.0 - online) * 0.86 {
                Channel::Counter
            } else {
                Channel::Postal
            }
        } else if procedure.level == ServiceLevel::Offline {
            return None;
        } else {
            Channel::Online
        };
        let agency_index = self.offerings[offering_index].agency as usize;
        let agency = &mut self.agencies[agency_index];
        agency.dossiers += 1;
        let code = format!(
            "{}-{}-{:07}",
            agency.code,
            calendar::compact_date(t),
            agency.dossiers % 10_000_000
        );
        let (province, commune) = (agency.province, agency.commune);

        let mut data = Map::new();
        data.insert("channel".into(), channel.as_str().into());
        data.insert(
            "vneid_authenticated".into(),
            (channel == Channel::Online && self.rng.gen_bool(0.86)).into(),
        );
        let applicant = match (procedure.business, self.rng.gen_range(0..100)) {
            (true, 0..85) => "business",
            (true, _) => "organization",
            (false, 0..96) => "citizen",
            (false, _) => "organization",
        };
        data.insert("applicant_kind".into(), applicant.into());
        let personal = self.personal(province, commune);
        let mut event = self.event(offering_index, code.clone(), t, "dossier.submitted", data);
        event.personal = Some(personal);

        let mut plan = self.plan(offering_index, channel, t);
        plan.reverse();
        let dossier = Dossier {
            offering: offering_index as u32,
            code,
            plan,
        };
        self.schedule(dossier);
        Some(event)
    }

    /// Personal data of an applicant filing in `province` (at a commune's People's Committee when
    /// `commune` is given).
    fn personal(&mut self, province: u32, commune: Option<u32>) -> Value {
        let rng = &mut self.rng;
        let province = &self.provinces[province as usize];
        let female = rng.gen_bool(0.5);
        let birth_year: u32 = rng.gen_range(1950..2008);
        let century_digit = match (birth_year >= 2000, female) {
            (false, false) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (true, true) => 3,
        };
        // Mostly born in the province where they file.
        let birth_province = if rng.gen_bool(0.8) {
            province.gso
        } else {
            self.gso_codes[rng.gen_range(0..self.gso_codes.len())]
        };
        let mut citizen_id = String::with_capacity(12);
        calendar::push_digits(&mut citizen_id, u32::from(birth_province), 3);
        calendar::push_digits(&mut citizen_id, century_digit, 1);
        calendar::push_digits(&mut citizen_id, birth_year % 100, 2);
        calendar::push_digits(&mut citizen_id, rng.gen_range(0..1_000_000), 6);

        let family = weighted(rng, &catalogue::FAMILY_NAMES);
        let (middle, given) = if female {
            (&catalogue::FEMALE_MIDDLE[..], &catalogue::FEMALE_GIVEN[..])
        } else {
            (&catalogue::MALE_MIDDLE[..], &catalogue::MALE_GIVEN[..])
        };
        let full_name = format!(
            "{family} {} {}",
            middle[rng.gen_range(0..middle.len())],
            given[rng.gen_range(0..given.len())]
        );
        let mut phone = String::with_capacity(10);
        phone
            .push_str(catalogue::PHONE_PREFIXES[rng.gen_range(0..catalogue::PHONE_PREFIXES.len())]);
        calendar::push_digits(&mut phone, rng.gen_range(0..10_000_000), 7);

        // Mostly living in the commune where they file; anywhere in the province otherwise.
        let lives_in = match commune {
            Some(commune) if rng.gen_bool(0.85) => commune as usize,
            _ => rng.gen_range(0..province.communes.len().max(1)),
        };
        let address = format!(
            "Số {} đường {}, {}{}",
            rng.gen_range(1..300),
            catalogue::STREETS[rng.gen_range(0..catalogue::STREETS.len())],
            province
                .communes
                .get(lives_in)
                .map_or(String::new(), |c| format!("{c}, ")),
            province.address_name,
        );

        let mut personal = Map::new();
        personal.insert("citizen_id".into(), citizen_id.into());
        personal.insert("full_name".into(), full_name.into());
        personal.insert("phone".into(), phone.into());
        personal.insert("address".into(), address.into());
        Value::Object(personal)
    }

    /// Everything that will happen to a dossier submitted at `t0`, in time order.
    fn plan(&mut self, offering: usize, channel: Channel, t0: i64) -> Vec<Planned> {
        let procedure = self.offerings[offering].procedure;
        let kind = self.agencies[self.offerings[offering].agency as usize].kind;
        let rng = &mut self.rng;
        let mut plan = Vec::with_capacity(12);

        // Refused at the door, or accepted.
        if rng.gen_bool(0.03) {
            let at = add_working_secs(t0 + 60, rng.gen_range(600..4 * 3600));
            push(
                &mut plan,
                at,
                Step::Refused {
                    reason: rng.gen_range(0..4),
                },
            );
            return plan;
        }
        let accepted = match channel {
            Channel::Counter => add_working_secs(t0 + 60, rng.gen_range(120..1200)),
            Channel::Online => add_working_secs(t0 + 60, rng.gen_range(900..6 * 3600)),
            Channel::Postal => add_working_secs(t0 + 60, rng.gen_range(1800..8 * 3600)),
        };
        let (legal_secs, mut due) = match procedure.duration {
            Duration::Hours(h) => (
                i64::from(h) * 3600,
                add_working_secs(accepted, i64::from(h) * 3600),
            ),
            Duration::WorkingDays(d) => (
                i64::from(d) * WORKING_DAY_SECS,
                close_after_working_days(accepted, d),
            ),
        };
        let digitized = rng.gen_bool(match channel {
            Channel::Online => 0.95,
            Channel::Counter => 0.7,
            Channel::Postal => 0.6,
        });
        push(
            &mut plan,
            accepted,
            Step::Accepted {
                due,
                digitized,
                reused: rng.gen_bool(0.35),
            },
        );

        if rng.gen_bool(0.015) {
            let at = add_working_secs(accepted, rng.gen_range(3600..legal_secs.max(7200)));
            push(
                &mut plan,
                at,
                Step::Withdrawn {
                    reason: rng.gen_range(0..3),
                },
            );
            return plan;
        }

        // Fee: requested on acceptance, paid online (any time) or at the counter.
        let mut paid = accepted;
        if procedure.fee_vnd > 0 {
            let requested = accepted + rng.gen_range(60..900);
            push(&mut plan, requested, Step::FeeRequested);
            let online = rng.gen_bool(match channel {
                Channel::Online => 0.93,
                Channel::Counter => 0.3,
                Channel::Postal => 0.5,
            });
            paid = if online {
                requested + rng.gen_range(120..36 * 3600)
            } else {
                add_working_secs(requested, rng.gen_range(60..2 * WORKING_DAY_SECS))
            };
            let gateway = if online {
                weighted_index(rng, &catalogue::ONLINE_GATEWAYS)
            } else {
                weighted_index(rng, &catalogue::OFFLINE_GATEWAYS)
            };
            push(
                &mut plan,
                paid,
                Step::FeePaid {
                    online,
                    gateway: gateway as u8,
                },
            );
        }

        // Processing time, in office seconds from acceptance; about 7% finish late.
        let late = rng.gen_bool(0.07);
        let share = if late {
            rng.gen_range(1.05..1.6)
        } else {
            rng.gen_range(0.2..0.97)
        };
        let work = ((legal_secs as f64 * share) as i64).max(600);
        let (mut base, mut remaining) = (accepted, work);

        if rng.gen_bool(0.08) {
            let before = (work as f64 * rng.gen_range(0.1..0.3)) as i64;
            let requested = add_working_secs(accepted, before.max(300));
            push(
                &mut plan,
                requested,
                Step::SupplementRequested {
                    reason: rng.gen_range(0..4),
                },
            );
            let outcome: f64 = rng.r#gen();
            if outcome < 0.85 {
                let mut received = requested + rng.gen_range(3600..7 * 86_400);
                if channel != Channel::Online {
                    received = calendar::next_working_instant(received);
                }
                let pause = received - requested;
                due += pause;
                let new_due = rng.gen_bool(0.7).then_some(due);
                push(&mut plan, received, Step::SupplementReceived { new_due });
                base = received;
                remaining = work - before;
            } else if outcome < 0.95 {
                let at = requested + rng.gen_range(2 * 86_400..10 * 86_400);
                push(
                    &mut plan,
                    at,
                    Step::Withdrawn {
                        reason: rng.gen_range(0..3),
                    },
                );
                return sorted(plan);
            } else {
                let at = add_working_secs(requested, 15 * WORKING_DAY_SECS);
                push(&mut plan, at, Step::Stopped { reason: 0 });
                return sorted(plan);
            }
        }
        let remaining = remaining.max(600);
        let resolved = add_working_secs(base, remaining).max(add_working_secs(paid, 600));

        if rng.gen_bool(0.01) {
            let at = add_working_secs(base, remaining / 2);
            push(
                &mut plan,
                at,
                Step::Stopped {
                    reason: rng.gen_range(1..3),
                },
            );
            return sorted(plan);
        }

        // Processing steps spread between acceptance (or the supplement) and resolution, each
        // with its share of the time to the due date as its own deadline.
        let steps = rng.gen_range(1..=3u8);
        let units = kind.handler_units().len();
        for k in 0..steps {
            let at = add_working_secs(base, remaining * i64::from(k + 1) / i64::from(steps + 2));
            let step = if k + 1 == steps { 2 } else { k.min(1) };
            let share = (due - base).max(0) * i64::from(k + 1) / i64::from(steps + 1);
            let step_due = calendar::next_working_instant(base + share).max(at) / 60 * 60;
            let unit = rng.gen_range(0..units) as u8;
            push(
                &mut plan,
                at.max(base + 60),
                Step::Processing {
                    no: k + 1,
                    step,
                    unit,
                    due: step_due,
                },
            );
        }

        if resolved > due && rng.gen_bool(0.55) {
            let at = (due - rng.gen_range(600..4 * 3600)).clamp(base + 120, resolved - 120);
            let new_due = close_after_working_days(resolved, rng.gen_range(1..3));
            push(
                &mut plan,
                at,
                Step::DeadlineExtended {
                    new_due,
                    reason: rng.gen_range(0..3),
                },
            );
            due = new_due;
        }

        let document = procedure.result.is_some();
        let signed = document && rng.gen_bool(0.95);
        if signed {
            let before = rng.gen_range(120..3600).min(remaining / 4);
            let at = add_working_secs(base, remaining - before).min(resolved - 60);
            push(
                &mut plan,
                at,
                Step::ResultSigned {
                    signer: rng.gen_range(0..2),
                },
            );
        }
        let electronic = signed && rng.gen_bool(0.9);
        push(
            &mut plan,
            resolved,
            Step::Resolved {
                electronic,
                denied: rng.gen_bool(0.03),
            },
        );

        // Returned: electronically, at the counter, or by public postal service.
        let weights: [u32; 3] = match (channel, electronic || !document) {
            (Channel::Online, true) => [86, 9, 5],
            (Channel::Online, false) => [0, 75, 25],
            (Channel::Counter, true) => [25, 70, 5],
            (Channel::Counter, false) => [0, 90, 10],
            (Channel::Postal, true) => [15, 5, 80],
            (Channel::Postal, false) => [0, 15, 85],
        };
        let method = weighted_index(
            rng,
            &[
                ("electronic", weights[0]),
                ("counter", weights[1]),
                ("postal", weights[2]),
            ],
        );
        let returned = match method {
            0 => resolved + rng.gen_range(60..3600),
            1 => add_working_secs(resolved + 600, rng.gen_range(600..4 * WORKING_DAY_SECS)),
            _ => add_working_secs(
                resolved + 600,
                rng.gen_range(WORKING_DAY_SECS..4 * WORKING_DAY_SECS),
            ),
        };
        push(
            &mut plan,
            returned,
            Step::Returned {
                method: method as u8,
            },
        );

        if rng.gen_bool(0.3) {
            let on_time = resolved <= due;
            let satisfied = rng.gen_bool(if on_time { 0.93 } else { 0.55 });
            let level = if satisfied {
                rng.gen_range(4..=5)
            } else {
                rng.gen_range(1..=3)
            };
            push(
                &mut plan,
                returned + rng.gen_range(60..3 * 86_400),
                Step::Rated { satisfied, level },
            );
        }
        sorted(plan)
    }

    fn schedule(&mut self, dossier: Dossier) {
        let Some(next) = dossier.plan.last().map(|p| p.at) else {
            return;
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(dossier);
                slot
            }
            None => {
                self.slots.push(Some(dossier));
                (self.slots.len() - 1) as u32
            }
        };
        self.open += 1;
        self.agenda.push(Reverse((next, self.agenda_order, slot)));
        self.agenda_order += 1;
    }

    /// The next planned event of the dossier in `slot`; re-files or closes the dossier.
    fn advance(&mut self, slot: u32) -> Event {
        let dossier = self.slots[slot as usize]
            .as_mut()
            .expect("agenda points at an open dossier");
        let planned = dossier
            .plan
            .pop()
            .expect("an open dossier has a planned event");
        let (offering, code) = (dossier.offering as usize, dossier.code.clone());
        match dossier.plan.last() {
            Some(next) => {
                self.agenda
                    .push(Reverse((next.at, self.agenda_order, slot)));
                self.agenda_order += 1;
            }
            None => {
                self.slots[slot as usize] = None;
                self.free_slots.push(slot);
                self.open -= 1;
            }
        }
        let (event_type, data) = self.step_data(offering, planned.step);
        self.event(offering, code, planned.at, event_type, data)
    }

    fn step_data(&mut self, offering: usize, step: Step) -> (&'static str, Map<String, Value>) {
        let mut data = Map::new();
        let procedure = self.offerings[offering].procedure;
        let agency = &mut self.agencies[self.offerings[offering].agency as usize];
        let event_type = match step {
            Step::Refused { reason } => {
                data.insert(
                    "reason".into(),
                    catalogue::REFUSAL_REASONS[reason as usize].into(),
                );
                "dossier.refused"
            }
            Step::Accepted {
                due,
                digitized,
                reused,
            } => {
                data.insert("due_at".into(), calendar::format_local(due).into());
                data.insert("handler_unit".into(), agency.kind.reception_unit().into());
                data.insert("digitized_inputs".into(), digitized.into());
                data.insert("reused_data".into(), reused.into());
                "dossier.accepted"
            }
            Step::Withdrawn { reason } => {
                data.insert(
                    "reason".into(),
                    catalogue::WITHDRAWAL_REASONS[reason as usize].into(),
                );
                "dossier.withdrawn"
            }
            Step::Stopped { reason } => {
                data.insert(
                    "reason".into(),
                    catalogue::STOP_REASONS[reason as usize].into(),
                );
                "dossier.stopped"
            }
            Step::SupplementRequested { reason } => {
                data.insert(
                    "reason".into(),
                    catalogue::SUPPLEMENT_REASONS[reason as usize].into(),
                );
                "dossier.supplement_requested"
            }
            Step::SupplementReceived { new_due } => {
                if let Some(due) = new_due {
                    data.insert("new_due_at".into(), calendar::format_local(due).into());
                }
                "dossier.supplement_received"
            }
            Step::Processing {
                no,
                step,
                unit,
                due,
            } => {
                data.insert("step_no".into(), no.into());
                data.insert("step".into(), catalogue::STEPS[step as usize].into());
                data.insert(
                    "handler_unit".into(),
                    agency.kind.handler_units()[unit as usize].into(),
                );
                data.insert(
                    "handler_role".into(),
                    catalogue::HANDLER_ROLES[step as usize].into(),
                );
                data.insert("due_at".into(), calendar::format_local(due).into());
                "dossier.processing_step"
            }
            Step::FeeRequested => {
                data.insert("amount_vnd".into(), procedure.fee_vnd.into());
                data.insert(
                    "fee_name".into(),
                    self.offerings[offering].fee_name.clone().into(),
                );
                "dossier.fee_requested"
            }
            Step::FeePaid { online, gateway } => {
                let gateways: &[(&str, u32)] = if online {
                    &catalogue::ONLINE_GATEWAYS
                } else {
                    &catalogue::OFFLINE_GATEWAYS
                };
                data.insert("online".into(), online.into());
                data.insert("gateway".into(), gateways[gateway as usize].0.into());
                data.insert("amount_vnd".into(), procedure.fee_vnd.into());
                agency.receipts += 1;
                let token = self.provinces[agency.province as usize].token;
                let receipt = format!(
                    "BL{}-{}-{:09}",
                    token.trim_start_matches('H'),
                    agency.kind.digit(),
                    agency.receipts
                );
                data.insert("receipt_number".into(), receipt.into());
                "dossier.fee_paid"
            }
            Step::DeadlineExtended { new_due, reason } => {
                data.insert("new_due_at".into(), calendar::format_local(new_due).into());
                data.insert(
                    "reason".into(),
                    catalogue::EXTENSION_REASONS[reason as usize].into(),
                );
                "dossier.deadline_extended"
            }
            Step::ResultSigned { signer } => {
                data.insert(
                    "signer".into(),
                    agency.kind.signers()[signer as usize].into(),
                );
                data.insert(
                    "certificate_serial".into(),
                    agency.serials[signer as usize].clone().into(),
                );
                data.insert("algorithm".into(), agency.algorithm.into());
                "dossier.result_signed"
            }
            Step::Resolved { electronic, denied } => {
                data.insert("electronic_result".into(), electronic.into());
                data.insert(
                    "decision".into(),
                    if denied { "denied" } else { "approved" }.into(),
                );
                let mut documents = Vec::new();
                let document = match procedure.result {
                    Some(_) if denied => Some(("Văn bản trả lời", "TL")),
                    other => other,
                };
                if let Some((name, symbol)) = document {
                    agency.results += 1;
                    let mut document = Map::new();
                    document.insert("name".into(), name.into());
                    document.insert(
                        "number".into(),
                        format!("{}/{symbol}", agency.results).into(),
                    );
                    documents.push(Value::Object(document));
                }
                data.insert("result_documents".into(), Value::Array(documents));
                "dossier.resolved"
            }
            Step::Returned { method } => {
                data.insert("method".into(), RETURN_METHODS[method as usize].into());
                "dossier.result_returned"
            }
            Step::Rated { satisfied, level } => {
                data.insert("satisfied".into(), satisfied.into());
                data.insert("level".into(), level.into());
                "dossier.rated"
            }
        };
        (event_type, data)
    }
}

impl Iterator for Generator {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        if self.catalogue_next < self.offerings.len() {
            let index = self.catalogue_next;
            self.catalogue_next += 1;
            return Some(self.published(index));
        }
        // Bounded: each turn either emits or moves the arrival clock forward, and arrivals are
        // turned away only while dossiers are open (whose events then come first).
        loop {
            if let Some(Reverse((at, _, slot))) = self.agenda.peek().copied()
                && at <= self.next_arrival
            {
                self.agenda.pop();
                return Some(self.advance(slot));
            }
            let t = self.next_arrival;
            self.next_arrival = self.arrival_after(t);
            if let Some(event) = self.arrive(t) {
                return Some(event);
            }
        }
    }
}

fn push(plan: &mut Vec<Planned>, at: i64, step: Step) {
    plan.push(Planned { at, step });
}

/// Plan events in time order, each at least one second after the one before.
fn sorted(mut plan: Vec<Planned>) -> Vec<Planned> {
    plan.sort_by_key(|p| p.at);
    for i in 1..plan.len() {
        if plan[i].at <= plan[i - 1].at {
            plan[i].at = plan[i - 1].at + 1;
        }
    }
    plan
}

/// A procedure beyond an agency kind's listed ones (agencies publish many rarely used ones).
fn synthetic_procedure(kind: AgencyKind, j: usize) -> (String, String, Procedure) {
    let code = format!("3.{}{:05}", kind.digit(), j);
    let name = format!("Thủ tục lĩnh vực {} số {}", kind.field(), j + 1);
    let level = match j % 3 {
        0 => ServiceLevel::FullOnline,
        1 => ServiceLevel::PartialOnline,
        _ => ServiceLevel::Offline,
    };
    let procedure = Procedure {
        code: "",
        name: "",
        field: kind.field(),
        level,
        fee_vnd: if j.is_multiple_of(2) { 0 } else { 30_000 },
        result: if j % 5 == 4 {
            None
        } else {
            Some(("Văn bản giải quyết", "VB"))
        },
        duration: Duration::WorkingDays(3 + (j % 10) as u32),
        weight: SYNTHETIC_WEIGHT,
        business: j % 4 == 3,
    };
    (code, name, procedure)
}

/// "Lệ phí đăng ký thường trú" for "Đăng ký thường trú".
fn fee_name(procedure_name: &str) -> String {
    let mut chars = procedure_name.chars();
    let first = chars
        .next()
        .map(|c| c.to_lowercase().collect::<String>())
        .unwrap_or_default();
    format!("Phí, lệ phí {first}{}", chars.as_str())
}

fn weighted<'a>(rng: &mut StdRng, items: &[(&'a str, u32)]) -> &'a str {
    items[weighted_index(rng, items)].0
}

fn weighted_index(rng: &mut StdRng, items: &[(&str, u32)]) -> usize {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut ticket = rng.gen_range(0..total);
    for (index, (_, weight)) in items.iter().enumerate() {
        if ticket < *weight {
            return index;
        }
        ticket -= weight;
    }
    items.len() - 1
}

/// SplitMix64's finalizer: a bijection on u64, so distinct counters give distinct ids.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID-shaped id: 48-bit millisecond time, then 16 bits of the seed and 64 bits unique to the
/// event, as 26 Crockford base32 characters.
fn event_id(at: i64, tag: u16, unique: u64) -> String {
    let millis = (at.max(0) as u128 * 1000) & ((1 << 48) - 1);
    let value = (millis << 80) | (u128::from(tag) << 64) | u128::from(unique);
    let mut id = String::with_capacity(26);
    for i in 0..26 {
        let shift = 125 - 5 * i;
        id.push(char::from(CROCKFORD[((value >> shift) & 31) as usize]));
    }
    id
}

//! The generator's stream: valid, deterministic, realistic, bounded.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use socai_model::{EVENT_TYPES, Event, Limits, Validator};
use socai_sim::{Generator, OPEN_DOSSIERS_MAX, SimConfig, agency_count, catalogue_len};

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| Validator::new(Limits::default()));

fn small() -> SimConfig {
    SimConfig {
        seed: 7,
        provinces: 3,
        communes_per_province: 2,
        procedures_per_agency: 8,
        start: "2026-06-01T08:00:00+07:00".into(),
        scale: 1,
    }
}

/// Validates an event the way the ledger will: from its serialized bytes.
#[track_caller]
fn assert_valid(event: &Event) {
    let bytes = serde_json::to_vec(event).unwrap();
    match VALIDATOR.validate(&bytes) {
        Ok(read) => assert_eq!(&read, event),
        Err(rejection) => panic!("{rejection}: {}", String::from_utf8_lossy(&bytes)),
    }
}

#[test]
fn the_catalogue_and_the_first_20k_events_after_it_are_valid() {
    for config in [SimConfig::default(), small()] {
        let generator = Generator::new(config);
        let n = generator.catalogue_len() + 20_000;
        for event in generator.take(n) {
            assert_valid(&event);
        }
    }
}

#[test]
fn catalogue_comes_first_one_event_per_agency_and_procedure() {
    let config = small();
    let generator = Generator::new(config.clone());
    // 3 provinces × (5 departments, the police, 2 communes), 8 procedures each
    assert_eq!(agency_count(&config), 3 * 8);
    let pairs = agency_count(&config) * config.procedures_per_agency;
    assert_eq!(generator.catalogue_len(), pairs);
    assert_eq!(catalogue_len(&config), pairs);
    let events: Vec<Event> = generator.take(pairs + 1).collect();
    let mut seen = HashSet::new();
    for event in &events[..pairs] {
        assert_eq!(event.event_type, "procedure.published");
        assert_eq!(event.dossier, event.procedure);
        assert_eq!(event.occurred_at, config.start);
        assert!(
            seen.insert((event.agency.clone(), event.procedure.clone())),
            "{event:?}"
        );
    }
    assert_eq!(events[pairs].event_type, "dossier.submitted");
    let agencies: HashSet<&str> = events[..pairs].iter().map(|e| e.agency.as_str()).collect();
    assert_eq!(agencies.len(), agency_count(&config));
    // the first three of today's provinces in GSO order: Hà Nội (H01, GSO 01), Cao Bằng (H03,
    // GSO 04), Tuyên Quang (H05, GSO 08); each commune with its agency code from the units file
    assert!(
        agencies.contains("000.00.12.H01")
            && agencies.contains("G09.03")
            && agencies.contains("000.01.02.H05"),
        "{agencies:?}"
    );
    let units = socai_metrics::units();
    for agency in &agencies {
        let province = socai_metrics::province_of(agency).unwrap();
        assert!(
            ["H01", "H03", "H05"].contains(&province.as_str()),
            "{agency}"
        );
        if agency.starts_with("000.0") && !agency.starts_with("000.00.") {
            assert!(units.commune_by_agency(agency).is_some(), "{agency}");
        }
    }
}

#[test]
fn same_config_same_events_and_the_seed_matters() {
    let a: Vec<Vec<u8>> = Generator::new(small())
        .take(5_000)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    let b: Vec<Vec<u8>> = Generator::new(small())
        .take(5_000)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    assert_eq!(a, b);
    let other = SimConfig { seed: 8, ..small() };
    let c: Vec<Vec<u8>> = Generator::new(other)
        .take(5_000)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    assert_ne!(a, c);
}

#[test]
fn ids_are_unique_ulid_shaped_and_follow_time() {
    let mut ids = HashSet::new();
    for event in Generator::new(small()).take(50_000) {
        assert_eq!(event.id.len(), 26, "{}", event.id);
        assert!(
            event
                .id
                .bytes()
                .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
            "{}",
            event.id
        );
        // the first 10 characters are the event time in milliseconds
        let millis = event.occurred_at_timestamp().unwrap().as_millisecond();
        let encoded = event.id[..10].bytes().fold(0i64, |acc, b| {
            acc * 32
                + b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
                    .iter()
                    .position(|c| *c == b)
                    .unwrap() as i64
        });
        assert_eq!(encoded, millis, "{}", event.id);
        assert!(ids.insert(event.id));
    }
}

#[test]
fn time_advances_in_office_hours_at_plus_seven() {
    let config = small();
    let generator = Generator::new(config.clone());
    let skip = generator.catalogue_len();
    let mut last = 0;
    let mut agency_actions = 0;
    let mut off_hours_actions = 0;
    for event in generator.skip(skip).take(50_000) {
        assert!(
            event.occurred_at.ends_with("+07:00"),
            "{}",
            event.occurred_at
        );
        let t = event.occurred_at_timestamp().unwrap().as_second();
        assert!(t >= last, "time went back to {}", event.occurred_at);
        last = t;
        let is_agency_action = matches!(
            event.event_type.as_str(),
            "dossier.accepted" | "dossier.refused" | "dossier.processing_step" | "dossier.resolved"
        );
        if is_agency_action {
            agency_actions += 1;
            let hour_minute = &event.occurred_at[11..16];
            let weekday = event
                .occurred_at_timestamp()
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
                .weekday();
            let in_hours = ("07:30".."11:30").contains(&hour_minute)
                || ("13:30".."17:00").contains(&hour_minute);
            let weekend = matches!(
                weekday,
                jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
            );
            off_hours_actions += usize::from(!in_hours || weekend);
        }
    }
    // a few resolutions are pushed one second past a neighbour; nearly all are in office hours
    assert!(
        off_hours_actions * 100 < agency_actions,
        "{off_hours_actions} of {agency_actions} off hours"
    );
    let days = (last - config.start.parse::<jiff::Timestamp>().unwrap().as_second()) / 86_400;
    assert!((7..400).contains(&days), "50k events span {days} days");
}

#[test]
fn lifecycles_are_in_order() {
    let generator = Generator::new(small());
    let skip = generator.catalogue_len();
    let mut dossiers: HashMap<String, Vec<Event>> = HashMap::new();
    for event in generator.skip(skip).take(100_000) {
        dossiers
            .entry(event.dossier.clone())
            .or_default()
            .push(event);
    }
    let terminal = [
        "dossier.refused",
        "dossier.withdrawn",
        "dossier.stopped",
        "dossier.result_returned",
        "dossier.rated",
    ];
    let mut complete = 0;
    for (code, events) in &dossiers {
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert!(
            code.starts_with(&format!("{}-", events[0].agency)),
            "{code}"
        );
        assert!(
            events
                .iter()
                .all(|e| e.agency == events[0].agency && e.procedure == events[0].procedure)
        );
        // the stream starts with no dossier open, so every lifecycle is seen from its start
        assert_eq!(types[0], "dossier.submitted", "{types:?}");
        assert!(events[0].personal.is_some());
        assert!(
            events[1..].iter().all(|e| e.personal.is_none()),
            "{types:?}"
        );
        let position = |t: &str| types.iter().position(|x| *x == t);
        if let (Some(accepted), Some(resolved)) =
            (position("dossier.accepted"), position("dossier.resolved"))
        {
            assert!(accepted < resolved, "{types:?}");
            if let Some(signed) = position("dossier.result_signed") {
                assert!(accepted < signed && signed < resolved, "{types:?}");
            }
            if let Some(returned) = position("dossier.result_returned") {
                assert!(resolved < returned, "{types:?}");
            }
            if let (Some(requested), Some(paid)) = (
                position("dossier.fee_requested"),
                position("dossier.fee_paid"),
            ) {
                assert!(requested < paid && paid < resolved, "{types:?}");
            }
            if let (Some(requested), Some(received)) = (
                position("dossier.supplement_requested"),
                position("dossier.supplement_received"),
            ) {
                assert!(requested < received && received < resolved, "{types:?}");
            }
        }
        let last = *types.last().unwrap();
        if terminal.contains(&last) {
            complete += 1;
            let ends = types
                .iter()
                .filter(|t| ["dossier.refused", "dossier.withdrawn", "dossier.stopped"].contains(t))
                .count();
            assert!(ends <= 1, "{types:?}");
            assert!(
                !(ends == 1 && types.contains(&"dossier.resolved")),
                "{types:?}"
            );
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in &types {
            *counts.entry(t).or_default() += 1;
        }
        for (t, n) in counts {
            assert!(
                t == "dossier.processing_step" || n == 1,
                "{t} {n} times in {types:?}"
            );
        }
    }
    assert!(
        complete > dossiers.len() / 2,
        "{complete} of {} complete",
        dossiers.len()
    );
}

#[test]
fn the_mix_is_realistic() {
    let generator = Generator::new(SimConfig {
        seed: 3,
        ..SimConfig::default()
    });
    let mut types: HashMap<String, usize> = HashMap::new();
    let mut channels: HashMap<String, usize> = HashMap::new();
    let (mut paid, mut paid_online) = (0, 0);
    let mut bytes = 0;
    let count = 150_000;
    for event in generator.take(count) {
        bytes += serde_json::to_vec(&event).unwrap().len();
        match event.event_type.as_str() {
            "dossier.submitted" => {
                *channels
                    .entry(event.data["channel"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                let personal = event.personal.as_ref().unwrap();
                let citizen_id = personal["citizen_id"].as_str().unwrap();
                assert!(
                    citizen_id.len() == 12 && citizen_id.bytes().all(|b| b.is_ascii_digit()),
                    "{citizen_id}"
                );
                assert!(personal["full_name"].as_str().unwrap().split(' ').count() >= 3);
                let phone = personal["phone"].as_str().unwrap();
                assert!(phone.len() == 10 && phone.starts_with('0'), "{phone}");
            }
            "dossier.fee_paid" => {
                paid += 1;
                paid_online += usize::from(event.data["online"] == true);
            }
            _ => {}
        }
        *types.entry(event.event_type).or_default() += 1;
    }
    for t in EVENT_TYPES {
        assert!(
            types.get(*t).copied().unwrap_or(0) > 0,
            "no {t} in {count} events"
        );
    }
    let submitted = types["dossier.submitted"] as f64;
    let share = |c: &str| channels.get(c).copied().unwrap_or(0) as f64 / submitted;
    assert!(
        (0.60..0.70).contains(&share("online")),
        "online {}",
        share("online")
    );
    assert!(
        (0.25..0.35).contains(&share("counter")),
        "counter {}",
        share("counter")
    );
    assert!(
        (0.03..0.08).contains(&share("postal")),
        "postal {}",
        share("postal")
    );
    let online_payment = paid_online as f64 / paid as f64;
    assert!(
        (0.65..0.78).contains(&online_payment),
        "online payment {online_payment}"
    );
    let signed = types["dossier.result_signed"] as f64 / types["dossier.resolved"] as f64;
    assert!((0.78..0.92).contains(&signed), "signed {signed}");
    let rated = types["dossier.rated"] as f64 / types["dossier.result_returned"] as f64;
    // ~30% of returned results are rated, up to 3 days later: a finite window sees fewer
    assert!((0.18..0.35).contains(&rated), "rated {rated}");
    let per_dossier = (count - types["procedure.published"]) as f64 / submitted;
    assert!(
        (6.0..10.0).contains(&per_dossier),
        "{per_dossier} events per dossier"
    );
    let average = bytes as f64 / count as f64;
    assert!(
        (330.0..470.0).contains(&average),
        "average size {average} bytes"
    );
}

#[test]
fn open_dossiers_stay_bounded() {
    let mut generator = Generator::new(small());
    let mut most = 0;
    for _ in 0..100_000 {
        generator.next().unwrap();
        most = most.max(generator.open_dossiers());
    }
    assert!(most > 0 && most <= OPEN_DOSSIERS_MAX, "{most}");
    assert_eq!(generator.turned_away(), 0, "a small world never fills up");
}

#[test]
fn degenerate_configs_still_stream() {
    let config = SimConfig {
        seed: 0,
        provinces: 0,
        communes_per_province: 1,
        procedures_per_agency: 0,
        start: "2026-01-01T00:00:00Z".into(),
        scale: 1,
    };
    let events: Vec<Event> = Generator::new(config).take(2_000).collect();
    assert_eq!(events.len(), 2_000);
    for event in &events {
        assert_valid(event);
    }
    // many procedures per agency: beyond the listed ones come synthetic ones, still unique; a
    // commune runs only the listed commune procedures
    let config = SimConfig {
        procedures_per_agency: 40,
        provinces: 1,
        ..small()
    };
    let generator = Generator::new(config.clone());
    let n = generator.catalogue_len();
    assert_eq!(n, 6 * 40 + 2 * 11);
    assert_eq!(catalogue_len(&config), n);
    let catalogue: Vec<Event> = generator.take(n).collect();
    let pairs: HashSet<(String, String)> = catalogue
        .iter()
        .map(|e| (e.agency.clone(), e.procedure.clone()))
        .collect();
    assert_eq!(pairs.len(), n);
    catalogue.iter().for_each(assert_valid);
}

#[test]
#[should_panic(expected = "invalid simulation start")]
fn a_bad_start_is_refused() {
    let _ = Generator::new(SimConfig {
        start: "monday".into(),
        ..SimConfig::default()
    });
}

#[test]
fn the_default_country_is_todays_34_provinces_with_all_their_communes() {
    let config = SimConfig::default();
    let units = socai_metrics::units();
    assert_eq!(config.provinces, 34);
    assert_eq!(config.communes_per_province, 0);
    assert_eq!(agency_count(&config), 34 * 6 + 3321);
    let generator = Generator::new(config.clone());
    let n = generator.catalogue_len();
    // departments 20 procedures each, communes the 11 listed commune procedures
    assert_eq!(n, 34 * 6 * 20 + 3321 * 11);
    assert_eq!(catalogue_len(&config), n);
    let mut agencies = HashSet::new();
    let mut submitted = 0;
    for event in generator.take(n + 20_000) {
        if agencies.insert(event.agency.clone()) {
            let province = socai_metrics::province_of(&event.agency).unwrap();
            // never a province that has merged
            let unit = units.province(&province).unwrap();
            assert!(unit.is_current(), "{}", event.agency);
            assert!(
                event.agency.starts_with("000.00.")
                    || event.agency.starts_with("G09.")
                    || units.commune_by_agency(&event.agency).is_some(),
                "{}",
                event.agency
            );
        }
        if let Some(personal) = &event.personal {
            submitted += 1;
            let province = units
                .province(&socai_metrics::province_of(&event.agency).unwrap())
                .unwrap();
            let address = personal["address"].as_str().unwrap();
            // "Số 12 đường Lê Lợi, phường Ba Đình, thành phố Hà Nội"
            let province_name = province.name.to_lowercase();
            assert!(
                address
                    .to_lowercase()
                    .ends_with(&format!(", {province_name}")),
                "{address} in {}",
                province.code
            );
            let commune = address.split(", ").nth(1).unwrap().to_lowercase();
            assert!(
                units
                    .communes_of(&province.code)
                    .any(|c| c.name.to_lowercase() == commune),
                "{address}"
            );
            // the citizen id starts with a current province's GSO code
            let citizen_id = personal["citizen_id"].as_str().unwrap();
            assert!(
                units
                    .provinces()
                    .any(|p| citizen_id[1..3] == p.gso && &citizen_id[..1] == "0"),
                "{citizen_id}"
            );
        }
    }
    assert_eq!(agencies.len(), agency_count(&SimConfig::default()));
    assert!(submitted > 1_000, "{submitted}");
}

#[test]
fn communes_share_a_province_work_and_departments_keep_theirs() {
    // a province's communes together get about as many dossiers as with two communes, so its
    // departments are not drowned by a hundred communes
    let share = |communes_per_province: usize| {
        let config = SimConfig {
            seed: 9,
            provinces: 2,
            communes_per_province,
            procedures_per_agency: 8,
            start: "2026-06-01T08:00:00+07:00".into(),
            scale: 1,
        };
        let generator = Generator::new(config);
        let skip = generator.catalogue_len();
        let (mut communes, mut all) = (0, 0);
        for event in generator.skip(skip).take(30_000) {
            if event.event_type == "dossier.submitted" {
                all += 1;
                communes += usize::from(
                    !event.agency.starts_with("000.00.") && !event.agency.starts_with("G09."),
                );
            }
        }
        communes as f64 / all as f64
    };
    let (two, all) = (share(2), share(0));
    assert!((0.4..0.65).contains(&two), "{two}");
    assert!((two - all).abs() < 0.06, "two communes {two}, all {all}");
}

/// `scale` multiplies the arrival rate: the same days hold about `scale` times the dossiers,
/// and more of them may be open at once.
#[test]
fn scale_multiplies_the_dossiers_a_day() {
    let submitted_in_a_week = |scale: u32| {
        let config = SimConfig {
            provinces: 3,
            communes_per_province: 4,
            scale,
            ..SimConfig::default()
        };
        let end = socai_metrics::parse_timestamp("2026-01-12T08:00:00+07:00").unwrap();
        Generator::new(config)
            .map_while(|e| {
                let at = socai_metrics::parse_timestamp(&e.occurred_at).unwrap();
                (e.event_type == "procedure.published" || at < end).then_some(e)
            })
            .filter(|e| e.event_type == "dossier.submitted")
            .count() as f64
    };
    let (one, four) = (submitted_in_a_week(1), submitted_in_a_week(4));
    assert!(one > 500.0, "{one}");
    let ratio = four / one;
    assert!((3.5..4.5).contains(&ratio), "{four} / {one} = {ratio}");
}

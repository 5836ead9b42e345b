//! The administrative units of Vietnam: `schemas/units/vn.json` (format and code scheme in
//! `schemas/units/README.md`), embedded at build time and checked when first used.
//!
//! Since 2025-07-01 the country has 34 provinces and two levels of local government (province →
//! commune). The file also keeps the 29 provinces that merged that day, each with the current
//! province it became part of (`merged_into`), so events filed under them count toward the unit
//! that exists now ([`crate::province_of`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::scope::{Scope, ScopeKind};

/// The embedded units file.
pub const UNITS_JSON: &str = include_str!("../../../schemas/units/vn.json");

static UNITS: LazyLock<Units> = LazyLock::new(|| {
    Units::from_json(UNITS_JSON)
        .unwrap_or_else(|err| panic!("schemas/units/vn.json is not a valid units file: {err}"))
});

/// The embedded units (parsed and checked on first use).
pub fn units() -> &'static Units {
    &UNITS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Province,
    Commune,
}

/// A name a unit had until a day (`YYYY-MM-DD`, the last day it was used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormerName {
    pub name: String,
    pub until: String,
}

/// One administrative unit (a line of `vn.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// `Hnn` for a province, the 5-digit GSO ward code for a commune; unique in the file.
    pub code: String,
    pub level: Level,
    /// Official Vietnamese name: "Thành phố Hà Nội", "Tỉnh Tuyên Quang", "Phường Ba Đình".
    pub name: String,
    /// Without "Tỉnh"/"Thành phố"/"Phường"/"Xã"/"Đặc khu": "Hà Nội", "Ba Đình".
    pub short_name: String,
    /// ASCII, no diacritics: "Ha Noi", "Ho Chi Minh City", "Ba Dinh Ward".
    pub name_en: String,
    /// General Statistics Office code.
    pub gso: String,
    /// The province of a commune; `None` for a province.
    pub parent: Option<String>,
    /// First day (`YYYY-MM-DD`); `None` when before 2025-07-01 and not recorded.
    pub valid_from: Option<String>,
    /// Last day; `None` = the unit exists today.
    pub valid_to: Option<String>,
    /// The current unit this one became part of.
    pub merged_into: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub former_names: Vec<FormerName>,
    /// A commune's People's Committee: its MaDonVi (`000.<cc>.<dd>.Hnn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
}

impl Unit {
    /// Exists today (no `valid_to`).
    pub fn is_current(&self) -> bool {
        self.valid_to.is_none()
    }

    /// A province whose official name makes it a city ("Thành phố ...").
    fn is_city(&self) -> bool {
        self.name.starts_with("Thành phố ")
    }
}

/// Why a units file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    #[error("not a units file: {0}")]
    Json(String),
    #[error("unit code {0:?} appears more than once")]
    DuplicateCode(String),
    #[error("unit {unit}: parent {parent:?} is not a current province in the file")]
    BadParent { unit: String, parent: String },
    #[error("unit {unit}: merged_into {target:?} is not a current unit in the file")]
    BadMerge { unit: String, target: String },
    #[error("unit {unit}: {problem}")]
    Invalid { unit: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "_about", default)]
    _about: Vec<String>,
    #[serde(rename = "source", default)]
    _source: Option<serde_json::Value>,
    units: Vec<Unit>,
}

/// The units of a file, indexed.
#[derive(Debug)]
pub struct Units {
    units: Vec<Unit>,
    by_code: HashMap<String, usize>,
    by_agency: HashMap<String, usize>,
    /// Current provinces, in GSO order.
    provinces: Vec<usize>,
    /// Communes by their province's code, in code order.
    communes: HashMap<String, Vec<usize>>,
    /// Units by the code they merged into, in file order.
    merged: HashMap<String, Vec<usize>>,
}

impl Units {
    /// Parses and checks a units file: every code unique, every parent an existing current
    /// province, every `merged_into` an existing current unit of the same level, and the rest of
    /// the format (levels, dates, communes' agency codes).
    pub fn from_json(text: &str) -> Result<Units, UnitsError> {
        let file: File = serde_json::from_str(text).map_err(|e| UnitsError::Json(e.to_string()))?;
        let units = file.units;
        let mut by_code = HashMap::with_capacity(units.len());
        for (index, unit) in units.iter().enumerate() {
            if by_code.insert(unit.code.clone(), index).is_some() {
                return Err(UnitsError::DuplicateCode(unit.code.clone()));
            }
        }
        let find = |code: &str| by_code.get(code).map(|&i| &units[i]);
        let mut by_agency = HashMap::new();
        for (index, unit) in units.iter().enumerate() {
            let invalid = |problem: String| UnitsError::Invalid {
                unit: unit.code.clone(),
                problem,
            };
            let days = [
                ("valid_from", &unit.valid_from),
                ("valid_to", &unit.valid_to),
            ];
            let days = days
                .into_iter()
                .filter_map(|(field, day)| Some((field, day.as_deref()?)))
                .chain(
                    unit.former_names
                        .iter()
                        .map(|f| ("until", f.until.as_str())),
                );
            for (field, day) in days {
                if day.len() != 10 || day.parse::<jiff::civil::Date>().is_err() {
                    return Err(invalid(format!("{field} {day:?} is not a YYYY-MM-DD date")));
                }
            }
            if let (Some(from), Some(to)) = (&unit.valid_from, &unit.valid_to)
                && from > to
            {
                return Err(invalid(format!("valid_from {from} is after valid_to {to}")));
            }
            match (unit.level, &unit.parent) {
                (Level::Province, Some(parent)) => {
                    return Err(invalid(format!("a province has no parent, not {parent:?}")));
                }
                (Level::Province, None) => {
                    if !is_province_token(&unit.code) {
                        return Err(invalid("a province's code is H and two digits".into()));
                    }
                }
                (Level::Commune, None) => return Err(invalid("a commune has a parent".into())),
                (Level::Commune, Some(parent)) => match find(parent) {
                    Some(p) if p.level == Level::Province && p.is_current() => {}
                    _ => {
                        return Err(UnitsError::BadParent {
                            unit: unit.code.clone(),
                            parent: parent.clone(),
                        });
                    }
                },
            }
            if let Some(target) = &unit.merged_into {
                match find(target) {
                    Some(t) if t.is_current() && t.level == unit.level && t.code != unit.code => {}
                    _ => {
                        return Err(UnitsError::BadMerge {
                            unit: unit.code.clone(),
                            target: target.clone(),
                        });
                    }
                }
                if unit.is_current() {
                    return Err(invalid("a merged unit has a valid_to".into()));
                }
            }
            if let Some(agency) = &unit.agency {
                if unit.level != Level::Commune {
                    return Err(invalid("only communes have an agency code".into()));
                }
                if agency_province_token(agency).as_deref() != unit.parent.as_deref() {
                    return Err(invalid(format!(
                        "agency {agency:?} does not end with its province {:?}",
                        unit.parent.as_deref().unwrap_or_default()
                    )));
                }
                if by_agency.insert(agency.clone(), index).is_some() {
                    return Err(invalid(format!("agency {agency:?} appears more than once")));
                }
            }
        }
        let mut provinces: Vec<usize> = (0..units.len())
            .filter(|&i| units[i].level == Level::Province && units[i].is_current())
            .collect();
        provinces.sort_by(|&a, &b| units[a].gso.cmp(&units[b].gso));
        let mut communes: HashMap<String, Vec<usize>> = HashMap::new();
        let mut merged: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, unit) in units.iter().enumerate() {
            if let (Level::Commune, Some(parent)) = (unit.level, &unit.parent) {
                communes.entry(parent.clone()).or_default().push(index);
            }
            if let Some(target) = &unit.merged_into {
                merged.entry(target.clone()).or_default().push(index);
            }
        }
        for list in communes.values_mut() {
            list.sort_by(|&a, &b| units[a].code.cmp(&units[b].code));
        }
        Ok(Units {
            units,
            by_code,
            by_agency,
            provinces,
            communes,
            merged,
        })
    }

    /// Every unit, in file order.
    pub fn all(&self) -> &[Unit] {
        &self.units
    }

    /// The unit with this code (a province token `Hnn` or a commune's GSO code).
    pub fn get(&self, code: &str) -> Option<&Unit> {
        self.by_code.get(code).map(|&i| &self.units[i])
    }

    /// The province with this token, current or not.
    pub fn province(&self, token: &str) -> Option<&Unit> {
        self.get(token).filter(|u| u.level == Level::Province)
    }

    /// The current province that `token` is today: itself, or the province it merged into.
    pub fn current_province(&self, token: &str) -> Option<&Unit> {
        let mut unit = self.province(token)?;
        // merged_into always names a current province (checked at load): one step.
        if let Some(target) = &unit.merged_into {
            unit = self.province(target)?;
        }
        unit.is_current().then_some(unit)
    }

    /// The current provinces, in GSO order (34 since 2025-07-01).
    pub fn provinces(&self) -> impl ExactSizeIterator<Item = &Unit> + Clone + '_ {
        self.provinces.iter().map(|&i| &self.units[i])
    }

    /// The communes of a province, in code order (none for a province that merged).
    pub fn communes_of(&self, token: &str) -> impl ExactSizeIterator<Item = &Unit> + Clone + '_ {
        self.communes
            .get(token)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&i| &self.units[i])
    }

    /// The commune whose People's Committee has this MaDonVi.
    pub fn commune_by_agency(&self, madonvi: &str) -> Option<&Unit> {
        self.by_agency.get(madonvi).map(|&i| &self.units[i])
    }

    /// The units that merged into `token` (empty when none did).
    pub fn merged_into(&self, token: &str) -> Vec<&Unit> {
        self.merged
            .get(token)
            .map(|list| list.iter().map(|&i| &self.units[i]).collect())
            .unwrap_or_default()
    }

    /// A scope's name, in Vietnamese and in English: the country; a province ("Tuyên Quang",
    /// "Tuyen Quang"); a commune's People's Committee by its agency code ("Phường Ba Đình",
    /// "Ba Dinh Ward"); a provincial department or the police ("Sở Tư pháp Hà Nội",
    /// "Department of Justice, Ha Noi"). `None` for procedures and unknown codes.
    pub fn name_of_scope(&self, scope: &Scope) -> Option<(String, String)> {
        match scope.kind {
            ScopeKind::National => Some(("Cả nước".into(), "Nationwide".into())),
            ScopeKind::Province => self
                .province(&scope.code)
                .map(|p| (p.short_name.clone(), p.name_en.clone())),
            ScopeKind::Agency => self.name_of_agency(&scope.code),
            ScopeKind::Procedure => None,
        }
    }

    /// An agency's name (see [`Units::name_of_scope`]).
    pub fn name_of_agency(&self, agency: &str) -> Option<(String, String)> {
        if let Some(commune) = self.commune_by_agency(agency) {
            return Some((commune.name.clone(), commune.name_en.clone()));
        }
        let province = self.province(&agency_province_token(agency)?)?;
        let (vi, en) = if agency.starts_with("G09.") {
            if province.is_city() {
                ("Công an thành phố", "City Police")
            } else {
                ("Công an tỉnh", "Provincial Police")
            }
        } else {
            let mut parts = agency.split('.');
            let department = match (parts.next(), parts.next(), parts.next()) {
                (Some("000"), Some("00"), Some(dd)) => dd,
                _ => return None,
            };
            match department {
                "12" => ("Sở Tư pháp", "Department of Justice"),
                "15" => ("Sở Xây dựng", "Department of Construction"),
                "16" => ("Sở Tài chính", "Department of Finance"),
                "20" => ("Sở Nội vụ", "Department of Home Affairs"),
                "21" => (
                    "Sở Nông nghiệp và Môi trường",
                    "Department of Agriculture and Environment",
                ),
                _ => return None,
            }
        };
        Some((
            format!("{vi} {}", province.short_name),
            format!("{en}, {}", province.name_en),
        ))
    }
}

/// `H` and two digits.
pub(crate) fn is_province_token(text: &str) -> bool {
    text.len() == 3 && text.starts_with('H') && text[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The province token an agency code names, as written (no merger followed): a local agency's
/// code ends in `.Hnn` (`000.00.12.H01`, `000.01.01.H29`); a ministry's provincial branch is
/// `Gmm.nn` (the police's `G09.20` is in province `H20`). `None` for anything else (a ministry
/// itself).
pub(crate) fn agency_province_token(agency: &str) -> Option<String> {
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let (head, last) = agency.rsplit_once('.')?;
    if is_province_token(last) {
        return Some(last.to_owned());
    }
    let ministry = head.strip_prefix('G')?;
    (two_digits(ministry) && two_digits(last)).then(|| format!("H{last}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The units of a file as written, without [`Units::from_json`]'s checks.
    fn raw(text: &str) -> Vec<Unit> {
        serde_json::from_str::<File>(text).unwrap().units
    }

    /// Codes that appear more than once.
    fn duplicate_codes(units: &[Unit]) -> Vec<&str> {
        let mut seen = HashSet::new();
        units
            .iter()
            .filter(|u| !seen.insert(u.code.as_str()))
            .map(|u| u.code.as_str())
            .collect()
    }

    /// Units whose parent is not a province in the file that exists today.
    fn orphans(units: &[Unit]) -> Vec<&str> {
        let current_provinces: HashSet<&str> = units
            .iter()
            .filter(|u| u.level == Level::Province && u.valid_to.is_none())
            .map(|u| u.code.as_str())
            .collect();
        units
            .iter()
            .filter(|u| {
                u.parent
                    .as_deref()
                    .is_some_and(|p| !current_provinces.contains(p))
            })
            .map(|u| u.code.as_str())
            .collect()
    }

    /// Merged units whose `merged_into` is not a unit in the file that exists today.
    fn bad_mergers(units: &[Unit]) -> Vec<&str> {
        let current: HashSet<&str> = units
            .iter()
            .filter(|u| u.valid_to.is_none())
            .map(|u| u.code.as_str())
            .collect();
        units
            .iter()
            .filter(|u| {
                u.merged_into
                    .as_deref()
                    .is_some_and(|m| !current.contains(m))
            })
            .map(|u| u.code.as_str())
            .collect()
    }

    #[test]
    fn the_units_file_every_code_unique() {
        let units = raw(UNITS_JSON);
        assert!(units.len() > 3000);
        assert_eq!(duplicate_codes(&units), Vec::<&str>::new());
    }

    #[test]
    fn the_units_file_every_parent_exists() {
        let units = raw(UNITS_JSON);
        assert_eq!(orphans(&units), Vec::<&str>::new());
        // and every commune has one
        assert!(
            units
                .iter()
                .all(|u| (u.level == Level::Commune) == u.parent.is_some())
        );
    }

    #[test]
    fn the_units_file_every_merged_unit_maps_to_a_current_one() {
        let units = raw(UNITS_JSON);
        assert_eq!(bad_mergers(&units), Vec::<&str>::new());
        // every province that ended merged into one
        let ended: Vec<&Unit> = units.iter().filter(|u| !u.is_current()).collect();
        assert_eq!(ended.len(), 29);
        assert!(ended.iter().all(|u| u.merged_into.is_some()), "{ended:?}");
    }

    #[test]
    fn the_property_checks_catch_a_broken_file() {
        let units = raw(BROKEN);
        assert_eq!(duplicate_codes(&units), ["H02"]);
        assert_eq!(orphans(&units), ["00001", "00002"]);
        assert_eq!(bad_mergers(&units), ["H02", "H03"]);
    }

    /// H02 twice; 00001's parent does not exist, 00002's ended; H02 merged into a unit that does
    /// not exist, H03 into one that ended.
    const BROKEN: &str = r#"{"units": [
        {"code": "H01", "level": "province", "name": "Tỉnh A", "short_name": "A", "name_en": "A", "gso": "01", "parent": null, "valid_from": null, "valid_to": null, "merged_into": null},
        {"code": "H02", "level": "province", "name": "Tỉnh B", "short_name": "B", "name_en": "B", "gso": "02", "parent": null, "valid_from": null, "valid_to": "2025-06-30", "merged_into": "H09"},
        {"code": "H02", "level": "province", "name": "Tỉnh B", "short_name": "B", "name_en": "B", "gso": "02", "parent": null, "valid_from": null, "valid_to": null, "merged_into": null},
        {"code": "H03", "level": "province", "name": "Tỉnh C", "short_name": "C", "name_en": "C", "gso": "03", "parent": null, "valid_from": null, "valid_to": "2025-06-30", "merged_into": "H04"},
        {"code": "H04", "level": "province", "name": "Tỉnh D", "short_name": "D", "name_en": "D", "gso": "04", "parent": null, "valid_from": null, "valid_to": "2025-06-30", "merged_into": "H01"},
        {"code": "00001", "level": "commune", "name": "Xã E", "short_name": "E", "name_en": "E Commune", "gso": "00001", "parent": "H07", "valid_from": "2025-07-01", "valid_to": null, "merged_into": null},
        {"code": "00002", "level": "commune", "name": "Xã F", "short_name": "F", "name_en": "F Commune", "gso": "00002", "parent": "H04", "valid_from": "2025-07-01", "valid_to": null, "merged_into": null}
    ]}"#;

    /// A small valid file; `broken` replaces one line of it.
    const SMALL: [&str; 4] = [
        r#"{"code": "H01", "level": "province", "name": "Tỉnh A", "short_name": "A", "name_en": "A", "gso": "01", "parent": null, "valid_from": null, "valid_to": null, "merged_into": null}"#,
        r#"{"code": "H02", "level": "province", "name": "Tỉnh B", "short_name": "B", "name_en": "B", "gso": "02", "parent": null, "valid_from": null, "valid_to": "2025-06-30", "merged_into": "H01"}"#,
        r#"{"code": "00001", "level": "commune", "name": "Xã E", "short_name": "E", "name_en": "E Commune", "gso": "00001", "parent": "H01", "valid_from": "2025-07-01", "valid_to": null, "merged_into": null, "agency": "000.01.01.H01"}"#,
        r#"{"code": "00002", "level": "commune", "name": "Xã F", "short_name": "F", "name_en": "F Commune", "gso": "00002", "parent": "H01", "valid_from": "2025-07-01", "valid_to": null, "merged_into": null, "agency": "000.01.02.H01"}"#,
    ];

    fn small_with(line: usize, replacement: &str) -> Result<Units, UnitsError> {
        let mut lines = SMALL.map(str::to_owned);
        lines[line] = replacement.to_owned();
        Units::from_json(&format!(r#"{{"units": [{}]}}"#, lines.join(",\n")))
    }

    #[test]
    fn the_validator_refuses_what_breaks_the_three_rules() {
        let small = small_with(0, SMALL[0]).unwrap();
        assert_eq!(small.provinces().count(), 1);
        assert_eq!(small.current_province("H02").unwrap().code, "H01");

        let refused = |line, replacement: &str| small_with(line, replacement).unwrap_err();
        // the fourth line repeats the third's code (with the fourth's agency code)
        assert_eq!(
            refused(3, &SMALL[2].replace("000.01.01", "000.01.02")),
            UnitsError::DuplicateCode("00001".into())
        );
        assert_eq!(
            refused(
                2,
                &SMALL[2].replace(r#""parent": "H01""#, r#""parent": "H07""#)
            ),
            UnitsError::BadParent {
                unit: "00001".into(),
                parent: "H07".into()
            }
        );
        // a parent that ended is refused too
        assert_eq!(
            refused(
                2,
                &SMALL[2].replace(r#""parent": "H01""#, r#""parent": "H02""#)
            ),
            UnitsError::BadParent {
                unit: "00001".into(),
                parent: "H02".into()
            }
        );
        // and a commune cannot be a parent
        assert!(matches!(
            refused(
                3,
                &SMALL[3].replace(r#""parent": "H01""#, r#""parent": "00001""#)
            ),
            UnitsError::BadParent { .. }
        ));
        assert_eq!(
            refused(
                1,
                &SMALL[1].replace(r#""merged_into": "H01""#, r#""merged_into": "H09""#)
            ),
            UnitsError::BadMerge {
                unit: "H02".into(),
                target: "H09".into()
            }
        );
        // merged into a unit that ended itself
        let ended_target = SMALL[0].replace(r#""valid_to": null"#, r#""valid_to": "2025-06-30""#);
        assert!(matches!(
            small_with(0, &ended_target).unwrap_err(),
            UnitsError::BadParent { .. } | UnitsError::BadMerge { .. }
        ));
        // merged into a unit of another level
        assert!(matches!(
            refused(
                1,
                &SMALL[1].replace(r#""merged_into": "H01""#, r#""merged_into": "00001""#)
            ),
            UnitsError::BadMerge { .. }
        ));
        // and the format
        for (line, replacement) in [
            (
                1,
                SMALL[1].replace(r#""valid_to": "2025-06-30""#, r#""valid_to": null"#),
            ),
            (1, SMALL[1].replace("2025-06-30", "30/06/2025")),
            (2, SMALL[2].replace("000.01.01.H01", "000.01.01.H02")),
            (3, SMALL[3].replace("000.01.02.H01", "000.01.01.H01")),
            (
                0,
                SMALL[0].replace(r#""parent": null"#, r#""parent": "H02""#),
            ),
            (0, SMALL[0].replace(r#""code": "H01""#, r#""code": "HN""#)),
        ] {
            assert!(
                matches!(
                    small_with(line, &replacement),
                    Err(UnitsError::Invalid { .. } | UnitsError::BadParent { .. })
                ),
                "{replacement}"
            );
        }
        assert!(matches!(
            small_with(0, &SMALL[0].replace("\"gso\"", "\"gso_code\"")),
            Err(UnitsError::Json(_))
        ));
        assert!(matches!(Units::from_json("[]"), Err(UnitsError::Json(_))));
    }

    #[test]
    fn the_embedded_file_loads_34_provinces_and_their_communes() {
        let u = units();
        let provinces: Vec<&Unit> = u
            .all()
            .iter()
            .filter(|u| u.level == Level::Province)
            .collect();
        assert_eq!(provinces.len(), 63);
        assert_eq!(u.provinces().len(), 34);
        assert_eq!(u.all().len() - 63, 3321);
        let gso: Vec<&str> = u.provinces().map(|p| p.gso.as_str()).collect();
        assert!(gso.is_sorted(), "{gso:?}");
        assert_eq!(u.provinces().next().unwrap().code, "H01");
        assert_eq!(u.provinces().last().unwrap().code, "H63");
        for province in u.provinces() {
            assert!(province.code.starts_with('H') && province.is_current());
            assert!(
                u.communes_of(&province.code).len() >= 30,
                "{}",
                province.code
            );
        }
        assert_eq!(
            u.provinces()
                .map(|p| u.communes_of(&p.code).len())
                .sum::<usize>(),
            3321
        );
    }

    #[test]
    fn provinces_and_their_mergers() {
        let u = units();
        let ha_noi = u.province("H01").unwrap();
        assert_eq!(
            (
                ha_noi.name.as_str(),
                ha_noi.short_name.as_str(),
                ha_noi.name_en.as_str()
            ),
            ("Thành phố Hà Nội", "Hà Nội", "Ha Noi")
        );
        assert_eq!(u.province("H50").unwrap().name_en, "Ho Chi Minh City");
        // the new Lào Cai kept Yên Bái's GSO code (15), so Yên Bái's token H10
        let lao_cai = u.province("H10").unwrap();
        assert_eq!(
            (lao_cai.name.as_str(), lao_cai.gso.as_str()),
            ("Tỉnh Lào Cai", "15")
        );
        assert_eq!(lao_cai.former_names[0].name, "Tỉnh Yên Bái");
        let old = u.province("H06").unwrap();
        assert_eq!(
            (
                old.gso.as_str(),
                old.valid_to.as_deref(),
                old.merged_into.as_deref()
            ),
            ("10", Some("2025-06-30"), Some("H10"))
        );
        assert_eq!(u.current_province("H06").unwrap().code, "H10");
        assert_eq!(u.current_province("H02").unwrap().code, "H05");
        assert_eq!(u.current_province("H05").unwrap().code, "H05");
        assert_eq!(u.current_province("H99"), None);
        assert_eq!(u.current_province("00004"), None);
        let codes = |units: Vec<&Unit>| units.iter().map(|u| u.code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(u.merged_into("H59")), ["H60", "H61"]);
        assert_eq!(codes(u.merged_into("H50")), ["H47", "H49"]);
        assert!(u.merged_into("H01").is_empty());
        assert_eq!(u.communes_of("H06").len(), 0);
    }

    #[test]
    fn communes_and_their_agencies() {
        let u = units();
        let ha_noi: Vec<&Unit> = u.communes_of("H01").collect();
        assert_eq!(ha_noi.len(), 126);
        assert_eq!(ha_noi[0].name, "Phường Ba Đình");
        assert_eq!(ha_noi[0].agency.as_deref(), Some("000.01.01.H01"));
        assert_eq!(ha_noi[98].agency.as_deref(), Some("000.01.99.H01"));
        assert_eq!(ha_noi[99].agency.as_deref(), Some("000.02.01.H01"));
        let codes: Vec<&str> = ha_noi.iter().map(|c| c.code.as_str()).collect();
        assert!(codes.is_sorted());
        assert_eq!(u.commune_by_agency("000.02.01.H01"), Some(ha_noi[99]));
        assert_eq!(u.commune_by_agency("000.00.12.H01"), None);
        for commune in u.all().iter().filter(|c| c.level == Level::Commune) {
            let agency = commune.agency.as_deref().unwrap();
            assert_eq!(crate::province_of(agency), commune.parent, "{agency}");
            assert_eq!(commune.valid_from.as_deref(), Some("2025-07-01"));
            assert!(commune.name_en.is_ascii(), "{}", commune.name_en);
        }
    }

    #[test]
    fn scopes_have_names() {
        let u = units();
        let name = |scope: &str| u.name_of_scope(&Scope::parse(scope).unwrap());
        let pair = |vi: &str, en: &str| Some((vi.to_owned(), en.to_owned()));
        assert_eq!(name("national"), pair("Cả nước", "Nationwide"));
        assert_eq!(name("province:H05"), pair("Tuyên Quang", "Tuyen Quang"));
        assert_eq!(name("province:H02"), pair("Hà Giang", "Ha Giang"));
        assert_eq!(
            name("agency:000.01.01.H01"),
            pair("Phường Ba Đình", "Ba Dinh Ward")
        );
        assert_eq!(
            name("agency:000.00.12.H01"),
            pair("Sở Tư pháp Hà Nội", "Department of Justice, Ha Noi")
        );
        assert_eq!(
            name("agency:000.00.21.H10"),
            pair(
                "Sở Nông nghiệp và Môi trường Lào Cai",
                "Department of Agriculture and Environment, Lao Cai"
            )
        );
        assert_eq!(
            name("agency:G09.05"),
            pair("Công an tỉnh Tuyên Quang", "Provincial Police, Tuyen Quang")
        );
        assert_eq!(
            name("agency:G09.50"),
            pair(
                "Công an thành phố Hồ Chí Minh",
                "City Police, Ho Chi Minh City"
            )
        );
        assert_eq!(name("agency:000.00.99.H01"), None);
        assert_eq!(name("agency:000.01.01.H99"), None);
        assert_eq!(name("agency:G09"), None);
        assert_eq!(name("procedure:1.004227"), None);
    }
}

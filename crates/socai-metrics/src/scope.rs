//! Scopes: national → province → agency, and procedure across agencies.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::units::{agency_province_token, units};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    National,
    Province,
    Agency,
    Procedure,
}

pub const SCOPE_KINDS: [ScopeKind; 4] = [
    ScopeKind::National,
    ScopeKind::Province,
    ScopeKind::Agency,
    ScopeKind::Procedure,
];

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::National => "national",
            ScopeKind::Province => "province",
            ScopeKind::Agency => "agency",
            ScopeKind::Procedure => "procedure",
        }
    }
    pub fn parse(text: &str) -> Option<ScopeKind> {
        SCOPE_KINDS.into_iter().find(|k| k.as_str() == text)
    }
}

/// A scope as reported: its kind and code (MaDonVi, MaTTHC, or the province code `Hnn`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub kind: ScopeKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
}

impl Scope {
    pub fn national() -> Scope {
        Scope {
            kind: ScopeKind::National,
            code: String::new(),
        }
    }

    /// The scope's tokens in KV keys and subjects: `national`, `province.H01`,
    /// `agency.000-00-12-H01`, `procedure.1-004227` (dots in codes become dashes, as in
    /// event subjects).
    pub fn token(&self) -> String {
        match self.kind {
            ScopeKind::National => "national".into(),
            kind => format!("{}.{}", kind.as_str(), self.code.replace('.', "-")),
        }
    }

    /// Parses `national`, `province:H01`, `agency:000.00.12.H01`, `procedure:1.004227` (a dash
    /// form from a key is accepted too for provinces).
    pub fn parse(text: &str) -> Option<Scope> {
        if text == "national" {
            return Some(Scope::national());
        }
        let (kind, code) = text.split_once(':').or_else(|| text.split_once('.'))?;
        let kind = ScopeKind::parse(kind)?;
        (kind != ScopeKind::National && !code.is_empty()).then(|| Scope {
            kind,
            code: code.to_owned(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ScopeKind::National => f.write_str("national"),
            kind => write!(f, "{}:{}", kind.as_str(), self.code),
        }
    }
}

/// The province an agency counts toward: the CURRENT province of the token its MaDonVi names. A
/// local agency's code ends in the province's `Hnn` (`000.00.12.H01`, `000.01.01.H29`); a
/// ministry's provincial branch is `Gmm.nn` (the police's `G09.20` is in province `H20`). A
/// province that has since merged ([`crate::units`]) counts toward the unit that exists now:
/// `000.00.12.H02` (Hà Giang, merged into Tuyên Quang on 2025-07-01) gives `H05`. A token the
/// units file does not know is kept as written. Anything else (a ministry itself) belongs to no
/// province and counts only nationally.
pub fn province_of(agency: &str) -> Option<String> {
    let token = agency_province_token(agency)?;
    match units().current_province(&token) {
        Some(current) => Some(current.code.clone()),
        None => Some(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provinces_come_from_the_agency_code() {
        for (agency, province) in [
            ("000.00.12.H01", Some("H01")),
            ("000.02.00.H63", Some("H63")),
            ("000.01.01.H01", Some("H01")),
            ("G09.20", Some("H20")),
            ("G09", None),
            ("000.00.12.X01", None),
            ("G09.2", None),
            ("H1", None),
            // a token the units file does not know is kept as written
            ("000.00.12.H99", Some("H99")),
        ] {
            assert_eq!(province_of(agency).as_deref(), province, "{agency}");
        }
    }

    #[test]
    fn merged_provinces_count_toward_the_province_that_exists_now() {
        for (agency, province) in [
            // Hà Giang (GSO 02) merged into Tuyên Quang (GSO 08)
            ("000.00.12.H02", "H05"),
            ("G09.02", "H05"),
            // old Lào Cai (GSO 10) merged into the unit of GSO 15 (Yên Bái, now named Lào Cai)
            ("000.00.21.H06", "H10"),
            ("G09.06", "H10"),
            // Hải Dương into Hải Phòng; Bình Dương and Bà Rịa - Vũng Tàu into Hồ Chí Minh
            ("000.00.16.H19", "H20"),
            ("000.01.00.H47", "H50"),
            ("G09.49", "H50"),
            // continuing units, renamed or not, stay themselves
            ("000.00.12.H10", "H10"),
            ("G09.05", "H05"),
        ] {
            assert_eq!(province_of(agency).as_deref(), Some(province), "{agency}");
        }
        // every province that ended counts toward a current one
        for unit in units().all().iter().filter(|u| !u.is_current()) {
            let current = province_of(&format!("000.00.12.{}", unit.code)).unwrap();
            assert_eq!(Some(&current), unit.merged_into.as_ref(), "{}", unit.code);
            assert!(units().get(&current).unwrap().is_current());
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        for text in [
            "national",
            "province:H01",
            "agency:G09.20",
            "procedure:1.004227",
        ] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Scope::parse("agency:G09.20").unwrap().token(),
            "agency.G09-20"
        );
        assert_eq!(Scope::parse("county:1"), None);
        assert_eq!(Scope::parse("agency:"), None);
    }
}

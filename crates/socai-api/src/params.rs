//! Query parameters, parsed strictly: an unknown, repeated or malformed parameter is a 400 that
//! names it.

use crate::problem::ApiError;

#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw query string, refusing parameters outside `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = match raw {
            None | Some("") => Vec::new(),
            Some(q) => serde_urlencoded::from_str(q).map_err(|e| {
                ApiError::bad_param("query", format!("the query string does not parse: {e}"))
            })?,
        };
        for (name, _) in &pairs {
            if !allowed.contains(&name.as_str()) {
                let expected = if allowed.is_empty() {
                    "this route takes no query parameters".to_owned()
                } else {
                    format!("this route takes {}", allowed.join(", "))
                };
                return Err(ApiError::bad_param(
                    name,
                    format!("unknown parameter {name:?}; {expected}"),
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// The value of `name`, if given once; an error if given twice.
    pub fn str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.pairs.iter().filter(|(n, _)| n == name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_param(
                name,
                format!("{name} is given more than once"),
            ));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    }

    /// Every value of a parameter that may repeat or hold a comma-separated list.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.str(name)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_param(name, format!("{name} {v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.str(name)? {
            None => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::bad_param(
                name,
                format!("{name} {v:?} is not true or false"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parameters() {
        let p = Params::parse(
            Some("from=3&limit=10&metric=a,b&metric=c"),
            &["from", "limit", "metric"],
        )
        .unwrap();
        assert_eq!(p.u64("from").unwrap(), Some(3));
        assert_eq!(p.u64("to").unwrap(), None);
        assert_eq!(p.list("metric"), ["a", "b", "c"]);
        assert!(p.str("metric").is_err());
        let e = Params::parse(Some("form=3"), &["from"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("form"));
        let p = Params::parse(Some("from=-1&personal=maybe"), &["from", "personal"]).unwrap();
        assert_eq!(
            p.u64("from").unwrap_err().parameter.as_deref(),
            Some("from")
        );
        assert!(p.bool("personal").is_err());
        assert!(Params::parse(None, &[]).unwrap().bool("personal").is_ok());
    }
}

//! Reading a section of the YAML file: typed values, errors that name the key (never its
//! value: it may be the API key), and the keys nobody read.

use yaml_rust2::Yaml;

use super::ImportError;

/// What a key of the old file is.
pub(super) enum Value<'a> {
    Present(&'a Yaml),
    Absent,
}

/// One section of the YAML file, with the keys read so far (to find the unknown ones).
pub(super) struct Section<'a> {
    name: &'static str,
    map: Option<&'a yaml_rust2::yaml::Hash>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    pub(super) fn new(
        root: &'a yaml_rust2::yaml::Hash,
        name: &'static str,
    ) -> Result<Self, ImportError> {
        let map = match root.get(&Yaml::String(name.to_string())) {
            None | Some(Yaml::Null) => None,
            Some(Yaml::Hash(h)) => Some(h),
            Some(other) => {
                return Err(ImportError::Invalid {
                    key: name.to_string(),
                    problem: format!("expected a section of keys, found {}", kind(other)),
                });
            }
        };
        Ok(Section {
            name,
            map,
            known: Vec::new(),
        })
    }

    pub(super) fn get(&mut self, key: &'static str) -> Value<'a> {
        self.known.push(key);
        match self.map.and_then(|m| m.get(&Yaml::String(key.to_string()))) {
            None | Some(Yaml::Null) => Value::Absent,
            Some(v) => Value::Present(v),
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    pub(super) fn string(&mut self, key: &'static str) -> Result<Option<String>, ImportError> {
        match self.get(key) {
            Value::Absent => Ok(None),
            Value::Present(Yaml::String(s)) => Ok(Some(s.clone())),
            Value::Present(Yaml::Integer(i)) => Ok(Some(i.to_string())),
            Value::Present(Yaml::Real(r)) => Ok(Some(r.clone())),
            Value::Present(other) => Err(self.wrong(key, "a text", other)),
        }
    }

    pub(super) fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ImportError> {
        match self.get(key) {
            Value::Absent => Ok(None),
            Value::Present(Yaml::Boolean(b)) => Ok(Some(*b)),
            Value::Present(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    pub(super) fn number(&mut self, key: &'static str) -> Result<Option<f64>, ImportError> {
        let v = match self.get(key) {
            Value::Absent => return Ok(None),
            Value::Present(Yaml::Integer(i)) => *i as f64,
            Value::Present(Yaml::Real(r)) => r.parse::<f64>().unwrap_or(f64::NAN),
            Value::Present(Yaml::String(s)) => match s.trim().parse::<f64>() {
                Ok(v) => v,
                Err(_) => return Err(self.wrong(key, "a number", &Yaml::String(s.clone()))),
            },
            Value::Present(other) => return Err(self.wrong(key, "a number", other)),
        };
        if v.is_finite() && v >= 0.0 {
            Ok(Some(v))
        } else {
            Err(ImportError::Invalid {
                key: self.path(key),
                problem: format!("expected a number >= 0, found {v}"),
            })
        }
    }

    pub(super) fn list(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ImportError> {
        match self.get(key) {
            Value::Absent => Ok(None),
            Value::Present(Yaml::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Yaml::String(s) => Ok(s.clone()),
                    other => Err(self.wrong(key, "a list of texts", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Value::Present(other) => Err(self.wrong(key, "a list", other)),
        }
    }

    pub(super) fn wrong(&self, key: &str, expected: &str, found: &Yaml) -> ImportError {
        ImportError::Invalid {
            key: self.path(key),
            problem: format!("expected {expected}, found {}", kind(found)),
        }
    }

    /// Every key of the section was read.
    pub(super) fn done(&self) -> Result<(), ImportError> {
        for k in self.map.into_iter().flat_map(|m| m.keys()) {
            let name = match k {
                Yaml::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if !self.known.contains(&name.as_str()) {
                return Err(ImportError::Unknown(self.path(&name)));
            }
        }
        Ok(())
    }
}

/// A YAML value's kind, for messages (never the value: it may be the key).
pub(super) fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a text",
        Yaml::Boolean(_) => "true/false",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a section",
        Yaml::Null => "nothing",
        Yaml::Alias(_) | Yaml::BadValue => "something unreadable",
    }
}

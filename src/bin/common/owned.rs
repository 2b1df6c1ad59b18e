//! Owned scoring requests and their borrowed views: shared by `atrank-batch` and `atrank`
//! (each includes this file as a module).

use atrank::Behavior;

/// One behavior, owned.
#[derive(Debug, Clone, Default)]
pub struct OwnedBehavior {
    pub group: Option<String>,
    pub id: String,
    pub category: Option<String>,
    pub features: Vec<(String, String)>,
    pub action: Option<String>,
    pub timestamp: i64,
}

/// One scoring request, owned.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub behaviors: Vec<OwnedBehavior>,
    pub candidates: Vec<String>,
    pub request_time: i64,
}

/// The borrowed views of one owned request that [`atrank::Request`] needs.
pub struct Borrowed<'a> {
    pub features: Vec<Vec<(&'a str, &'a str)>>,
    pub candidates: Vec<&'a str>,
}

impl<'a> Borrowed<'a> {
    pub fn new(r: &'a OwnedRequest) -> Self {
        Borrowed {
            features: r
                .behaviors
                .iter()
                .map(|b| {
                    b.features
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect()
                })
                .collect(),
            candidates: r.candidates.iter().map(String::as_str).collect(),
        }
    }

    pub fn behaviors(&'a self, r: &'a OwnedRequest) -> Vec<Behavior<'a>> {
        r.behaviors
            .iter()
            .zip(&self.features)
            .map(|(b, f)| Behavior {
                group: b.group.as_deref(),
                id: &b.id,
                category: b.category.as_deref(),
                features: f,
                action: b.action.as_deref(),
                timestamp: b.timestamp,
            })
            .collect()
    }
}

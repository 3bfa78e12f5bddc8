//! Clarifai key scopes: the names the upstream defines, and the sets a key is created with.
//!
//! The upstream's own listing route (ListScopes) takes only a browser session token, so the
//! service ships the list (docs/upstream.md, "Scopes"; the list is below). Deprecated and internal scopes are
//! known but refused: a key is never created with them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;

/// Scopes a key may be created with (exposed, not deprecated).
pub const GRANTABLE_SCOPES: &[&str] = &[
    "All",
    "Predict",
    "Search",
    "Inputs:Get",
    "Inputs:Add",
    "Inputs:Delete",
    "Concepts:Get",
    "Concepts:Add",
    "Annotations:Get",
    "Annotations:Add",
    "Annotations:Delete",
    "Models:Get",
    "Models:Add",
    "Models:Delete",
    "Models:Train",
    "Workflows:Get",
    "Workflows:Add",
    "Workflows:Delete",
    "Datasets:Get",
    "Datasets:Add",
    "Datasets:Delete",
    "Apps:Get",
    "Apps:Add",
    "Apps:Delete",
    "Keys:Get",
    "Keys:Add",
    "Keys:Delete",
    "Collaborators:Get",
    "Collaborators:Add",
    "Collaborators:Delete",
    "Metrics:Get",
    "Metrics:Add",
    "Metrics:Delete",
    "Tasks:Get",
    "Tasks:Add",
    "Tasks:Delete",
    "PasswordPolicies:Get",
    "PasswordPolicies:Add",
    "PasswordPolicies:Delete",
    "LabelOrders:Get",
    "LabelOrders:Add",
    "LabelOrders:Delete",
    "FindDuplicateAnnotationsJobs:Get",
    "FindDuplicateAnnotationsJobs:Add",
    "FindDuplicateAnnotationsJobs:Delete",
    "SavedSearch:Get",
    "SavedSearch:Add",
    "SavedSearch:Delete",
    "ModelVersionPublications:Add",
    "ModelVersionPublications:Delete",
    "WorkflowPublications:Add",
    "WorkflowPublications:Delete",
    "BulkOperation:Get",
    "BulkOperation:Add",
    "BulkOperation:Delete",
    "Uploads:Get",
    "Uploads:Add",
    "Uploads:Delete",
    "Runners:Get",
    "Runners:Add",
    "Runners:Delete",
    "RunnerItems:Get",
    "RunnerItems:Add",
    "Nodepools:Get",
    "Nodepools:Add",
    "Nodepools:Delete",
    "ComputeClusters:Get",
    "ComputeClusters:Add",
    "ComputeClusters:Delete",
    "Deployments:Get",
    "Deployments:Add",
    "Deployments:Delete",
    "InstanceTypes:Get",
    "ModelExports:Get",
    "ModelExports:Add",
    "Models:Pull",
    "AuditLogs:Get",
    "LogEntries:Get",
    "UserMetrics:Get",
    "WorkflowVersionEvaluations:Get",
    "WorkflowVersionEvaluations:Add",
    "Pipelines:Get",
    "Pipelines:Add",
    "Pipelines:Delete",
    "PipelineSteps:Get",
    "PipelineSteps:Add",
    "PipelineSteps:Delete",
    "PipelineSteps:Pull",
    "PipelineVersionRunStatusLogs:Get",
    "Secrets:Get",
    "Secrets:Add",
    "Secrets:Delete",
    "Artifacts:Get",
    "Artifacts:Add",
    "Artifacts:Delete",
    "AnnotationTracks:Get",
    "AnnotationTracks:Add",
    "AnnotationTracks:Delete",
    "WorkflowMetrics:Add",
    "WorkflowMetrics:Delete",
];

/// Scopes the upstream still exposes but which are deprecated: refused by the service.
pub const DEPRECATED_SCOPES: &[&str] = &[
    "Inputs:Patch",
    "Concepts:Patch",
    "Models:Patch",
    "Workflows:Patch",
    "Annotations:Patch",
    "Collectors:Get",
    "Collectors:Add",
    "Collectors:Delete",
    "Modules:Get",
    "Modules:Add",
    "Modules:Delete",
    "InstalledModuleVersions:Get",
    "InstalledModuleVersions:Add",
    "InstalledModuleVersions:Delete",
    "WorkflowMetrics:Get",
];

/// Scopes the upstream keeps internal (never exposed): never sent.
pub const INTERNAL_SCOPES: &[&str] = &[
    "Outputs:Patch",
    "Concepts:Delete",
    "Models:Sync",
    "TSNEVisualizations:Add",
    "TSNEVisualizations:Get",
    "HistoricalUsage:Get",
];

/// One grantable Clarifai scope, such as `Predict` or `Inputs:Add`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    /// Parses a scope name; deprecated, internal and unknown names are refused.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if GRANTABLE_SCOPES.contains(&s) {
            return Ok(Self(s.to_owned()));
        }
        let why = if DEPRECATED_SCOPES.contains(&s) {
            "is deprecated upstream and cannot be granted"
        } else if INTERNAL_SCOPES.contains(&s) {
            "is internal upstream and cannot be granted"
        } else {
            "is not a Clarifai scope"
        };
        Err(ParseError::new(
            "scope",
            format!("{:?} {why}", truncate(s, 64)),
        ))
    }

    /// The scope name as the upstream spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `All`, which grants everything.
    pub fn is_all(&self) -> bool {
        self.0 == "All"
    }

    /// Scopes the upstream also requires when a key is created with this one
    /// (`X:Add` needs `X:Get`; `X:Delete` needs `X:Add` and `X:Get`, where they exist).
    pub fn dependencies(&self) -> Vec<Scope> {
        let Some((resource, action)) = self.0.split_once(':') else {
            return Vec::new();
        };
        if resource == "AnnotationTracks" {
            return Vec::new();
        }
        let wanted: &[&str] = match action {
            "Add" | "Train" | "Pull" => &["Get"],
            "Delete" => &["Add", "Get"],
            _ => &[],
        };
        wanted
            .iter()
            .filter_map(|a| Scope::parse(&format!("{resource}:{a}")).ok())
            .collect()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A sorted, de-duplicated set of scopes.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Parses scope names; fails on the first invalid one.
    pub fn parse<I, S>(names: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        names
            .into_iter()
            .map(|n| Scope::parse(n.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Builds a set from parsed scopes.
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    /// Iterates in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Scopes of `self` that `allowed` does not contain.
    pub fn not_in(&self, allowed: &ScopeSet) -> Vec<Scope> {
        self.0.difference(&allowed.0).cloned().collect()
    }

    /// The set plus the dependencies the upstream requires for each scope.
    pub fn with_dependencies(&self) -> ScopeSet {
        let mut out = self.0.clone();
        for s in &self.0 {
            out.extend(s.dependencies());
        }
        Self(out)
    }

    /// Names as strings, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scopes_parse_and_others_are_refused() {
        assert!(Scope::parse("Predict").is_ok());
        assert!(Scope::parse("Inputs:Add").is_ok());
        assert!(Scope::parse("predict").is_err());
        assert!(Scope::parse("Inputs:Patch").is_err());
        assert!(Scope::parse("Concepts:Delete").is_err());
        assert!(Scope::parse("").is_err());
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let s = ScopeSet::parse(["Predict", "Inputs:Get", "Predict"]).unwrap();
        assert_eq!(s.names(), vec!["Inputs:Get", "Predict"]);
    }

    #[test]
    fn dependencies_follow_the_upstream_rules() {
        let s = ScopeSet::parse(["Inputs:Delete"])
            .unwrap()
            .with_dependencies();
        assert_eq!(s.names(), vec!["Inputs:Add", "Inputs:Delete", "Inputs:Get"]);
        let s = ScopeSet::parse(["ModelVersionPublications:Add"])
            .unwrap()
            .with_dependencies();
        assert_eq!(s.names(), vec!["ModelVersionPublications:Add"]);
    }

    #[test]
    fn every_grantable_scope_is_unique() {
        let set: BTreeSet<_> = GRANTABLE_SCOPES.iter().collect();
        assert_eq!(set.len(), GRANTABLE_SCOPES.len());
    }
}

//! The deployment-mode vocabulary: the four words the API (`deployment_mode`), the dashboard,
//! the CLI help, the chart values and the docs all use, defined once.

use serde::{Deserialize, Serialize};

/// How a tenant is deployed, derived from what feeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentMode {
    /// One machine, no control plane feeding from endpoints: `agent-bom-agent scan` locally, or a
    /// control plane nothing has reported to yet.
    Local,
    /// Endpoints report to a control plane: enrolled agents, `agent-bom fleet sync` pushes, or both.
    Fleet,
    /// The control plane runs in Kubernetes and holds cluster scans, but no endpoint reports.
    Cluster,
    /// Cluster scans and endpoints (agents or pushes) in the same tenant.
    Hybrid,
}

impl DeploymentMode {
    /// Every mode, in the order the docs present them.
    pub const ALL: [Self; 4] = [Self::Local, Self::Fleet, Self::Cluster, Self::Hybrid];

    /// The mode from what feeds the tenant: endpoints (agents or pushes) and cluster scans.
    pub fn derive(has_endpoint_ingest: bool, has_cluster_scan: bool) -> Self {
        match (has_endpoint_ingest, has_cluster_scan) {
            (true, true) => Self::Hybrid,
            (true, false) => Self::Fleet,
            (false, true) => Self::Cluster,
            (false, false) => Self::Local,
        }
    }

    /// The word, as the API serialises it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Fleet => "fleet",
            Self::Cluster => "cluster",
            Self::Hybrid => "hybrid",
        }
    }

    /// One sentence for help texts and the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Local => "this machine only; nothing reports to a control plane yet",
            Self::Fleet => "endpoints (agents or fleet-sync pushes) report to a control plane",
            Self::Cluster => "the control plane runs in Kubernetes and holds cluster scans",
            Self::Hybrid => "cluster scans and endpoint reports in one tenant",
        }
    }
}

impl std::fmt::Display for DeploymentMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_its_word() {
        for mode in DeploymentMode::ALL {
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::String(mode.as_str().into())
            );
        }
    }

    #[test]
    fn any_endpoint_feed_is_fleet() {
        assert_eq!(DeploymentMode::derive(false, false), DeploymentMode::Local);
        assert_eq!(DeploymentMode::derive(true, false), DeploymentMode::Fleet);
        assert_eq!(DeploymentMode::derive(false, true), DeploymentMode::Cluster);
        assert_eq!(DeploymentMode::derive(true, true), DeploymentMode::Hybrid);
    }
}

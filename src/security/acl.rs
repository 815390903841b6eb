//! Kafka's ACL model and the authorizer that checks it.
//!
//! An ACL binding allows or denies one principal (or `User:*`), from one host (or `*`), one
//! operation on the resources one pattern names: a literal name (or `*`, every resource of the
//! type) or a prefix. Deny wins over allow. Allowing Read, Write, Delete or Alter also allows
//! Describe, and AlterConfigs allows DescribeConfigs (Kafka's implications; a deny never
//! implies). `super.users` may do everything; a resource no ACL names is open to everyone only
//! with `allow.everyone.if.no.acl.found` (default false once authorization is on).
//!
//! ACLs live in cluster metadata; every shard checks against its own copy through an index
//! rebuilt when a new metadata version brings new ACLs (`AclIndex`), so a check is a hash
//! lookup and a scan of the prefixed patterns of its resource type, with no lock.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Principal;
pub use crate::config::AuthorizerSettings;

/// Kafka's resource types (wire values: Any 1, Topic 2, Group 3, Cluster 4,
/// TransactionalId 5, DelegationToken 6, User 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
            ResourceType::TransactionalId => "transactional-id",
        }
    }

    pub fn parse(name: &str) -> Option<ResourceType> {
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|kind| {
            kind.name() == name
                || (name == "transactionalid" && *kind == ResourceType::TransactionalId)
        })
    }
}

/// The name of the cluster resource, as Kafka writes it.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name and host.
pub const WILDCARD: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }
}

/// Kafka's operations (wire values 2..=12; Any is 1, for filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Self::ALL
            .into_iter()
            .find(|operation| operation.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::All => "All",
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Delete => "Delete",
            Operation::Alter => "Alter",
            Operation::Describe => "Describe",
            Operation::ClusterAction => "ClusterAction",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
        }
    }

    pub fn parse(name: &str) -> Option<Operation> {
        let wanted = name.trim().replace(['-', '_'], "").to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|operation| operation.name().to_ascii_lowercase() == wanted)
    }

    /// Whether an ACL allowing `self` allows `wanted` (Kafka's implications).
    fn allows(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Permission::Deny => "Deny",
            Permission::Allow => "Allow",
        }
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Whether this ACL's pattern covers the resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == WILDCARD || self.host == host)
    }

    /// Kafka's checks on a binding to create: a name, a principal `Type:name`, and nothing
    /// Kafka itself refuses (a prefixed pattern needs a non-empty prefix, the cluster is
    /// named `kafka-cluster`).
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() {
            return Err("resource name is empty".to_string());
        }
        if Principal::parse(&self.principal).is_none() {
            return Err(format!("principal `{}` is not Type:name", self.principal));
        }
        if self.host.is_empty() {
            return Err("host is empty (use * for any)".to_string());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        Ok(())
    }
}

/// A DescribeAcls / DeleteAcls filter: None matches anything (Kafka's ANY; `Match` patterns
/// are resolved by `matches_pattern`).
#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    /// None: any; Some(None): Kafka's MATCH (every pattern that covers the name).
    pub pattern_type: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let name_ok = match (&self.pattern_type, &self.resource_name) {
            // MATCH: every ACL that would apply to the named resource.
            (Some(None), Some(name)) => acl.covers(name),
            (_, Some(name)) => acl.resource_name == *name,
            (_, None) => true,
        };
        let pattern_ok = match self.pattern_type {
            Some(Some(pattern)) => acl.pattern_type == pattern,
            _ => true,
        };
        self.resource_type
            .is_none_or(|kind| kind == acl.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// A shard's index of the ACLs of one metadata version.
#[derive(Default)]
pub struct AclIndex {
    literal: HashMap<(ResourceType, String), Vec<AclBinding>>,
    prefixed: HashMap<ResourceType, Vec<AclBinding>>,
}

impl AclIndex {
    pub fn new(acls: &[AclBinding]) -> AclIndex {
        let mut index = AclIndex::default();
        for acl in acls {
            match acl.pattern_type {
                PatternType::Literal => index
                    .literal
                    .entry((acl.resource_type, acl.resource_name.clone()))
                    .or_default()
                    .push(acl.clone()),
                PatternType::Prefixed => index
                    .prefixed
                    .entry(acl.resource_type)
                    .or_default()
                    .push(acl.clone()),
            }
        }
        index
    }

    /// Every ACL that covers `resource_type` `name`.
    fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let exact = self.literal.get(&(resource_type, name.to_string()));
        let wildcard = self.literal.get(&(resource_type, WILDCARD.to_string()));
        let prefixed = self
            .prefixed
            .get(&resource_type)
            .into_iter()
            .flatten()
            .filter(move |acl| acl.covers(name));
        exact
            .into_iter()
            .flatten()
            .chain(wildcard.into_iter().flatten())
            .chain(prefixed)
    }

    /// Whether some ACL allows `principal` from `host` `operation` on some resource of
    /// `resource_type` (Kafka's `authorizeByResourceType`, used for InitProducerId: Write on
    /// any topic lets a producer be idempotent, KIP-679). A literal or prefixed deny of one
    /// resource does not cancel an allow of another.
    pub fn allowed_on_some(
        &self,
        settings: &AuthorizerSettings,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if !settings.enabled || settings.super_users.iter().any(|user| user == principal) {
            return true;
        }
        self.literal
            .iter()
            .filter(|((kind, _), _)| *kind == resource_type)
            .flat_map(|(_, acls)| acls)
            .chain(self.prefixed.get(&resource_type).into_iter().flatten())
            .any(|acl| {
                acl.permission == Permission::Allow
                    && acl.applies_to(principal, host)
                    && acl.operation.allows(operation)
            })
    }

    /// Whether `principal` from `host` may do `operation` on `resource_type` `name`.
    pub fn authorize(
        &self,
        settings: &AuthorizerSettings,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !settings.enabled || settings.super_users.iter().any(|user| user == principal) {
            return true;
        }
        let mut any = false;
        let mut allowed = false;
        for acl in self.covering(resource_type, name) {
            any = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                Permission::Deny
                    if acl.operation == operation || acl.operation == Operation::All =>
                {
                    return false;
                }
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any && settings.allow_everyone_if_no_acl_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        kind: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: kind,
            resource_name: name.to_string(),
            pattern_type: pattern,
            principal: principal.to_string(),
            host: "*".to_string(),
            operation,
            permission,
        }
    }

    #[test]
    fn deny_wins_prefixes_match_and_implications_hold() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let acls = vec![
            acl(
                Topic,
                "orders-",
                Prefixed,
                "User:alice",
                Write,
                Permission::Allow,
            ),
            acl(
                Topic,
                "orders-secret",
                Literal,
                "User:alice",
                All,
                Permission::Deny,
            ),
            acl(Topic, "*", Literal, "User:bob", Read, Permission::Allow),
            acl(Group, "g", Literal, "User:*", Read, Permission::Allow),
        ];
        let index = AclIndex::new(&acls);
        let settings = AuthorizerSettings {
            enabled: true,
            super_users: vec!["User:root".to_string()],
            allow_everyone_if_no_acl_found: false,
        };
        let check = |principal: &str, operation, kind, name: &str| {
            index.authorize(&settings, principal, "127.0.0.1", operation, kind, name)
        };
        assert!(check("User:alice", Write, Topic, "orders-eu"));
        assert!(
            check("User:alice", Describe, Topic, "orders-eu"),
            "Write implies Describe"
        );
        assert!(!check("User:alice", Read, Topic, "orders-eu"));
        assert!(
            !check("User:alice", Write, Topic, "orders-secret"),
            "deny wins"
        );
        assert!(!check("User:alice", Write, Topic, "payments"));
        assert!(check("User:bob", Read, Topic, "anything"), "wildcard name");
        assert!(check("User:carol", Read, Group, "g"), "wildcard principal");
        assert!(
            check("User:root", Delete, Cluster, CLUSTER_NAME),
            "super user"
        );
        assert!(
            !check("User:carol", Describe, Cluster, CLUSTER_NAME),
            "no ACL: denied"
        );
        let open = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..settings.clone()
        };
        assert!(index.authorize(&open, "User:carol", "h", Describe, Cluster, CLUSTER_NAME));
        assert!(
            !index.authorize(&open, "User:carol", "h", Read, Topic, "orders-eu"),
            "a resource with ACLs stays closed to others"
        );
    }

    #[test]
    fn filters_match_like_kafka() {
        let binding = acl(
            ResourceType::Topic,
            "orders-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Write,
            Permission::Allow,
        );
        let mut filter = AclFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders-eu".to_string()),
            pattern_type: Some(None),
            ..AclFilter::default()
        };
        assert!(
            filter.matches(&binding),
            "MATCH finds the prefix covering the name"
        );
        filter.pattern_type = Some(Some(PatternType::Literal));
        assert!(!filter.matches(&binding));
        assert!(AclFilter::default().matches(&binding));
        assert!(binding.validate().is_ok());
        let mut bad = binding.clone();
        bad.principal = "alice".to_string();
        assert!(bad.validate().is_err());
    }
}

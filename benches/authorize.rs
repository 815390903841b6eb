//! The authorizer's cost per check (`AclIndex::authorize`), what every request pays per topic or
//! group it names once `authorizer.enable` is on: a cluster of 1,000 literal topic ACLs, 100
//! prefixed ones and 100 group ACLs, for 100 principals. Checked: a literal allow (hash lookup),
//! a prefixed allow (scan of the type's prefixes), a denial (no matching ACL), and a super user
//! (no lookup). The per-shard index is rebuilt only when the ACLs change (`AclIndex::new`,
//! measured too).
//!
//! Run: `cargo bench --bench authorize`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sluice::config::AuthorizerSettings;
use sluice::security::acl::{
    AclBinding, AclIndex, Operation, PatternType, Permission, ResourceType,
};

fn acls() -> Vec<AclBinding> {
    let binding = |resource_type, name: String, pattern_type, principal: String| AclBinding {
        resource_type,
        resource_name: name,
        pattern_type,
        principal,
        host: "*".to_string(),
        operation: Operation::Write,
        permission: Permission::Allow,
    };
    let mut acls = Vec::new();
    for topic in 0..1000 {
        acls.push(binding(
            ResourceType::Topic,
            format!("topic-{topic}"),
            PatternType::Literal,
            format!("User:user-{}", topic % 100),
        ));
    }
    for prefix in 0..100 {
        acls.push(binding(
            ResourceType::Topic,
            format!("team-{prefix}-"),
            PatternType::Prefixed,
            format!("User:user-{prefix}"),
        ));
        acls.push(binding(
            ResourceType::Group,
            format!("group-{prefix}"),
            PatternType::Literal,
            format!("User:user-{prefix}"),
        ));
    }
    acls
}

fn authorize(c: &mut Criterion) {
    let acls = acls();
    let index = AclIndex::new(&acls);
    let settings = AuthorizerSettings {
        enabled: true,
        super_users: vec!["User:admin".to_string()],
        allow_everyone_if_no_acl_found: false,
    };
    let check = |principal: &str, name: &str| {
        index.authorize(
            &settings,
            principal,
            "10.1.2.3",
            Operation::Describe,
            ResourceType::Topic,
            name,
        )
    };
    assert!(check("User:user-7", "topic-107"));
    assert!(check("User:user-42", "team-42-orders"));
    assert!(!check("User:user-1", "topic-107"));
    let mut group = c.benchmark_group("authorize");
    group.bench_function("literal_allow", |b| {
        b.iter(|| check(black_box("User:user-7"), black_box("topic-107")))
    });
    group.bench_function("prefixed_allow", |b| {
        b.iter(|| check(black_box("User:user-42"), black_box("team-42-orders")))
    });
    group.bench_function("denied", |b| {
        b.iter(|| check(black_box("User:user-1"), black_box("topic-107")))
    });
    group.bench_function("super_user", |b| {
        b.iter(|| check(black_box("User:admin"), black_box("topic-107")))
    });
    group.bench_function("index_rebuild_1200_acls", |b| {
        b.iter(|| AclIndex::new(black_box(&acls)))
    });
    group.finish();
}

criterion_group!(benches, authorize);
criterion_main!(benches);

//! The behaviour of a tenant's cache, the same on every backend (in-process, standalone
//! Redis, Redis Cluster with keys spread, Redis Cluster with a hash slot per tenant): keys
//! never cross tenants, whatever the caller puts in them; values, TTLs, counters,
//! get-or-compute, invalidation and purge behave alike.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ALL, Cleanup, Kind, MINUTE, cache, ctx, keys_matching, plant};
use tenancy_cache::redis::AsyncCommands;
use tenancy_cache::{Cache, ErrorKind};
use tenancy_core::TenantId;
use tenancy_test::operator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_at_two_tenants_is_two_values() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let (a, b) = (cleanup.tenant("acme"), cleanup.tenant("beta"));
        // The brief's widget: user #4271 exists at both firms.
        let (at_a, at_b) = (
            cache.tenant(&ctx(&a, "4271")),
            cache.tenant(&ctx(&b, "4271")),
        );
        let key = "user:4271:recent_activity";
        at_a.set(key, &vec!["CAPA-17 acme"], MINUTE).await.unwrap();
        assert_eq!(
            at_b.get::<Vec<String>>(key).await.unwrap(),
            None,
            "{kind:?}"
        );
        at_b.set(key, &vec!["CAPA-3 beta"], MINUTE).await.unwrap();
        assert_eq!(
            at_a.get::<Vec<String>>(key).await.unwrap().unwrap(),
            ["CAPA-17 acme"],
            "{kind:?}"
        );
        assert_eq!(
            at_b.get::<Vec<String>>(key).await.unwrap().unwrap(),
            ["CAPA-3 beta"],
            "{kind:?}"
        );
        assert!(at_a.delete(key).await.unwrap(), "{kind:?}");
        assert!(!at_a.delete(key).await.unwrap(), "{kind:?}");
        assert_eq!(
            at_a.get::<Vec<String>>(key).await.unwrap(),
            None,
            "{kind:?}"
        );
        assert!(
            at_b.get::<Vec<String>>(key).await.unwrap().is_some(),
            "{kind:?}"
        );
        assert_eq!(cache.stats().tag_mismatches, 0, "{kind:?}");
    }
}

/// Caller parts that try to name another tenant's key, widen a pattern or move a hash slot.
fn hostile_keys(victim: &TenantId) -> Vec<String> {
    vec![
        format!("tt:{victim}:g1:app:x"),
        format!("../{victim}:x"),
        format!("}}{{{victim}}}:x"),
        format!("{{{victim}}}"),
        String::from("*"),
        String::from("x:*:y"),
        String::from("[a-z]?\\"),
        String::from("a b\r\nc"),
        String::from("\u{202e}ünïcødé"),
        String::from("%7B"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_caller_keys_stay_in_their_tenant_and_slot() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let (attacker, victim) = (cleanup.tenant("attacker"), cleanup.tenant("victim"));
        let at_victim = cache.tenant(&ctx(&victim, "u1"));
        at_victim.set("x", &"victim's", MINUTE).await.unwrap();
        let at_attacker = cache.tenant(&ctx(&attacker, "u1"));
        for key in hostile_keys(&victim) {
            at_attacker.set(&key, &"attacker's", MINUTE).await.unwrap();
            assert_eq!(
                at_attacker.get::<String>(&key).await.unwrap().as_deref(),
                Some("attacker's"),
                "{kind:?} {key:?}"
            );
        }
        assert_eq!(
            at_victim.get::<String>("x").await.unwrap().as_deref(),
            Some("victim's"),
            "{kind:?}"
        );
        if kind == Kind::InProcess {
            continue;
        }
        let prefix_of = |tenant: &TenantId| {
            if kind == Kind::ClusterHashTag {
                format!("tt:{{{tenant}}}:")
            } else {
                format!("tt:{tenant}:")
            }
        };
        // The victim's keyspace holds its own value and generation, nothing else.
        let victim_keys = keys_matching(kind, &format!("{}*", prefix_of(&victim))).await;
        assert_eq!(victim_keys.len(), 2, "{kind:?}: {victim_keys:?}");
        // Every key the attacker wrote is in the attacker's keyspace: ten hostile keys and
        // the generation, none of them with a raw hash-tag or glob character after the
        // prefix.
        let all_named = keys_matching(kind, &format!("*{attacker}*")).await;
        let prefix = prefix_of(&attacker);
        assert_eq!(all_named.len(), 11, "{kind:?}: {all_named:?}");
        let attacker_keys = all_named;
        for key in &attacker_keys {
            assert!(key.starts_with(&prefix), "{kind:?}: {key}");
            assert!(
                !key[prefix.len()..].contains(['{', '}', '*', '?', '[', ']', ' ']),
                "{kind:?}: {key}"
            );
        }
        if kind == Kind::ClusterHashTag {
            // Every key of the attacker is in the slot of its tenant id, and the victim's
            // in the victim's: nothing a caller writes moves either.
            let mut conn = common::raw_cluster().await;
            let slot = |key: String| {
                let mut cmd = tenancy_cache::redis::cmd("CLUSTER");
                cmd.arg("KEYSLOT").arg(key);
                cmd
            };
            let attacker_slot: u16 = slot(attacker.to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in attacker_keys {
                let got: u16 = slot(key.clone()).query_async(&mut conn).await.unwrap();
                assert_eq!(got, attacker_slot, "{key}");
            }
            let victim_slot: u16 = slot(victim.to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in victim_keys {
                let got: u16 = slot(key.clone()).query_async(&mut conn).await.unwrap();
                assert_eq!(got, victim_slot, "{key}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_expire_after_their_ttl() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let tenant = cache.tenant(&ctx(&cleanup.tenant("ttl"), "u1"));
        tenant
            .set("short", &1, Duration::from_millis(300))
            .await
            .unwrap();
        tenant.set("long", &2, MINUTE).await.unwrap();
        assert_eq!(
            tenant.get::<i32>("short").await.unwrap(),
            Some(1),
            "{kind:?}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(tenant.get::<i32>("short").await.unwrap(), None, "{kind:?}");
        assert_eq!(
            tenant.get::<i32>("long").await.unwrap(),
            Some(2),
            "{kind:?}"
        );
        for bad in [
            Duration::ZERO,
            Duration::from_micros(999),
            tenancy_cache::MAX_TTL * 2,
        ] {
            let err = tenant.set("x", &1, bad).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidTtl, "{kind:?}");
        }
        for bad in [String::new(), "k".repeat(tenancy_cache::MAX_KEY_LEN + 1)] {
            let err = tenant.set(&bad, &1, MINUTE).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{kind:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_compute_computes_once_under_concurrency() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let tenant = cache.tenant(&ctx(&cleanup.tenant("compute"), "u1"));
        let computed = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..16 {
            let tenant = tenant.clone();
            let computed = Arc::clone(&computed);
            calls.push(tenant.context().clone().spawn(async move {
                tenant
                    .get_or_compute("report", MINUTE, || async {
                        computed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(String::from("expensive"))
                    })
                    .await
                    .unwrap()
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap(), "expensive", "{kind:?}");
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1, "{kind:?}");
        // A failing compute is an error of kind Compute, and nothing is stored.
        let err = tenant
            .get_or_compute("broken", MINUTE, || async {
                Err::<String, _>(std::io::Error::other("database down"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Compute, "{kind:?}");
        assert!(
            !err.to_string().contains("database down"),
            "the cause is pasted: {err}"
        );
        assert_eq!(tenant.get::<String>("broken").await.unwrap(), None);
        // A value of another type is recomputed, not an error.
        tenant.set("typed", &"text", MINUTE).await.unwrap();
        let number = tenant
            .get_or_compute("typed", MINUTE, || async { Ok::<_, std::io::Error>(7u32) })
            .await
            .unwrap();
        assert_eq!(number, 7);
        assert_eq!(
            tenant.get::<u32>("report").await.unwrap_err().kind(),
            ErrorKind::Serialization
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_atomic_and_per_tenant() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let a = cache.tenant(&ctx(&cleanup.tenant("count-a"), "u1"));
        let b = cache.tenant(&ctx(&cleanup.tenant("count-b"), "u1"));
        let mut calls = Vec::new();
        for _ in 0..40 {
            let a = a.clone();
            calls.push(
                a.context()
                    .clone()
                    .spawn(async move { a.increment("logins", 1, MINUTE).await.unwrap() }),
            );
        }
        let mut seen: Vec<i64> = Vec::new();
        for call in calls {
            seen.push(call.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "{kind:?}");
        assert_eq!(a.counter("logins").await.unwrap(), Some(40), "{kind:?}");
        assert_eq!(
            a.increment("logins", -5, MINUTE).await.unwrap(),
            35,
            "{kind:?}"
        );
        assert_eq!(b.counter("logins").await.unwrap(), None, "{kind:?}");
        assert_eq!(
            b.increment("logins", 2, MINUTE).await.unwrap(),
            2,
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_hides_every_value_of_one_tenant_at_once() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let (a, b) = (cleanup.tenant("inval-a"), cleanup.tenant("inval-b"));
        let (at_a, at_b) = (cache.tenant(&ctx(&a, "u1")), cache.tenant(&ctx(&b, "u1")));
        for i in 0..10 {
            at_a.set(&format!("k{i}"), &i, MINUTE).await.unwrap();
            at_b.set(&format!("k{i}"), &i, MINUTE).await.unwrap();
        }
        at_a.invalidate().await.unwrap();
        for i in 0..10 {
            assert_eq!(
                at_a.get::<i32>(&format!("k{i}")).await.unwrap(),
                None,
                "{kind:?}"
            );
            assert_eq!(
                at_b.get::<i32>(&format!("k{i}")).await.unwrap(),
                Some(i),
                "{kind:?}"
            );
        }
        at_a.set("k0", &100, MINUTE).await.unwrap();
        assert_eq!(at_a.get::<i32>("k0").await.unwrap(), Some(100), "{kind:?}");
        // The operator's invalidation does the same; a second handle sees it once its
        // generation is refreshed (at once here: the same node).
        cache.platform().invalidate(&operator(), &a).await.unwrap();
        assert_eq!(at_a.get::<i32>("k0").await.unwrap(), None, "{kind:?}");
        assert_eq!(at_b.get::<i32>("k1").await.unwrap(), Some(1), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_reaches_other_nodes_within_the_refresh() {
    for kind in [Kind::Redis, Kind::Cluster] {
        let refresh = Duration::from_millis(200);
        let node_1 = Cache::new(common::config(kind).generation_refresh(refresh)).unwrap();
        let node_2 = Cache::new(common::config(kind).generation_refresh(refresh)).unwrap();
        let mut cleanup = Cleanup::new(&node_1);
        let tenant = cleanup.tenant("nodes");
        node_1
            .tenant(&ctx(&tenant, "u1"))
            .set("k", &1, MINUTE)
            .await
            .unwrap();
        let on_2 = node_2.tenant(&ctx(&tenant, "u1"));
        assert_eq!(on_2.get::<i32>("k").await.unwrap(), Some(1), "{kind:?}");
        node_1
            .tenant(&ctx(&tenant, "u1"))
            .invalidate()
            .await
            .unwrap();
        tokio::time::sleep(refresh + Duration::from_millis(100)).await;
        assert_eq!(on_2.get::<i32>("k").await.unwrap(), None, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_acme_never_touches_acme_corp() {
    for kind in ALL {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let acme = cleanup.tenant("acme");
        let acme_corp = cleanup.adopt(TenantId::new(&format!("{acme}-corp")).unwrap());
        let (at_acme, at_corp) = (
            cache.tenant(&ctx(&acme, "u1")),
            cache.tenant(&ctx(&acme_corp, "u1")),
        );
        for i in 0..50 {
            at_acme.set(&format!("k{i}"), &i, MINUTE).await.unwrap();
            at_corp.set(&format!("k{i}"), &i, MINUTE).await.unwrap();
        }
        at_acme.increment("n", 1, MINUTE).await.unwrap();
        // An invalidated generation's keys are purged too.
        at_acme.invalidate().await.unwrap();
        at_acme.set("after", &1, MINUTE).await.unwrap();
        let report = cache.platform().purge(&operator(), &acme).await.unwrap();
        if kind == Kind::InProcess {
            assert_eq!(report.deleted, 52, "{kind:?}");
        } else {
            // 50 values, a counter, one more value, the generation.
            assert_eq!(report.deleted, 53, "{kind:?}");
            let expected_nodes = if kind == Kind::Redis { 1 } else { 3 };
            assert_eq!(report.nodes, expected_nodes, "{kind:?}");
            let prefix = if kind == Kind::ClusterHashTag {
                format!("tt:{{{acme}}}:*")
            } else {
                format!("tt:{acme}:*")
            };
            assert!(keys_matching(kind, &prefix).await.is_empty(), "{kind:?}");
        }
        for i in 0..50 {
            assert_eq!(
                at_acme.get::<i32>(&format!("k{i}")).await.unwrap(),
                None,
                "{kind:?}"
            );
            assert_eq!(
                at_corp.get::<i32>(&format!("k{i}")).await.unwrap(),
                Some(i),
                "{kind:?}"
            );
        }
        assert_eq!(at_acme.get::<i32>("after").await.unwrap(), None, "{kind:?}");
        // The tenant can use its cache again after a purge.
        at_acme.set("again", &1, MINUTE).await.unwrap();
        assert_eq!(
            at_acme.get::<i32>("again").await.unwrap(),
            Some(1),
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_tagged_for_another_key_is_a_miss_and_an_alarm() {
    for kind in [Kind::Redis, Kind::Cluster, Kind::ClusterHashTag] {
        let cache = cache(kind);
        let mut cleanup = Cleanup::new(&cache);
        let (a, b) = (cleanup.tenant("alarm-a"), cleanup.tenant("alarm-b"));
        let (at_a, at_b) = (cache.tenant(&ctx(&a, "u1")), cache.tenant(&ctx(&b, "u1")));
        at_a.set("widget", &"a's", MINUTE).await.unwrap();
        at_b.set("widget", &"b's", MINUTE).await.unwrap();
        // What a connection that lost track of its replies would hand A: B's stored value.
        let a_key = keys_matching(kind, &format!("*{a}*widget"))
            .await
            .pop()
            .unwrap();
        let b_key = keys_matching(kind, &format!("*{b}*widget"))
            .await
            .pop()
            .unwrap();
        let b_value: Vec<u8> = match kind {
            Kind::Redis => common::raw_standalone().await.get(&b_key).await.unwrap(),
            _ => common::raw_cluster().await.get(&b_key).await.unwrap(),
        };
        plant(kind, &a_key, &b_value).await;
        let before = cache.stats();
        assert_eq!(
            at_a.get::<String>("widget").await.unwrap(),
            None,
            "{kind:?}"
        );
        let after = cache.stats();
        assert_eq!(after.tag_mismatches, before.tag_mismatches + 1, "{kind:?}");
        // The connection that carried it was closed, not reused.
        assert_eq!(
            after.discarded_connections,
            before.discarded_connections + 1,
            "{kind:?}"
        );
        // Raw bytes that are no envelope are a miss too, not an error.
        plant(kind, &a_key, b"\"b's\"").await;
        assert_eq!(
            at_a.get::<String>("widget").await.unwrap(),
            None,
            "{kind:?}"
        );
        assert_eq!(cache.stats().malformed, after.malformed + 1, "{kind:?}");
    }
}

#[tokio::test]
async fn no_tenant_in_scope_fails_closed() {
    let cache = Cache::in_process();
    let err = cache.current().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let tenant = tenancy_test::unique_tenant("scope");
    let ctx = ctx(&tenant, "u1");
    let found = ctx
        .scope(async { cache.current().map(|c| c.context().tenant().clone()) })
        .await
        .unwrap();
    assert_eq!(found, tenant);
}

#[cfg(feature = "http")]
mod response_cache {
    //! The brief's widget scenario, solved by composition: a per-user "recent activity"
    //! route behind `TenantLayer` and the response cache.

    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{HeaderName, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tenancy_cache::http::ResponseCacheLayer;
    use tenancy_core::http::TenantLayer;
    use tenancy_core::http::resolve::TenantHeader;
    use tenancy_core::{
        Actor, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant, TenantContext,
    };
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    use super::common::{ALL, Cleanup, MINUTE, cache};

    async fn body(response: Response<tenancy_cache::http::ResponseBody<String>>) -> String {
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_tenants_with_the_same_user_and_path_get_their_own_responses() {
        for kind in ALL {
            let cache = cache(kind);
            let mut cleanup = Cleanup::new(&cache);
            let (a, b) = (cleanup.tenant("widget-a"), cleanup.tenant("widget-b"));
            let catalog = InMemoryCatalog::new();
            let op = tenancy_test::operator();
            for id in [&a, &b] {
                let placement = Placement::new(
                    ServerName::new("embedded").unwrap(),
                    IsolationMode::Database,
                );
                catalog
                    .create(&op, Tenant::new(id.clone(), "Firm", placement))
                    .unwrap();
            }
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&calls);
            let recent_activity = service_fn(move |request: Request<String>| {
                let counted = Arc::clone(&counted);
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let ctx = TenantContext::current().unwrap();
                    let body = format!(
                        "CAPA titles of {} for user {} ({})",
                        ctx.tenant(),
                        ctx.actor().id(),
                        request.uri().path()
                    );
                    Ok::<_, Infallible>(Response::new(body))
                }
            });
            let app = ServiceBuilder::new()
                .layer(TenantLayer::new(
                    TenantHeader::new(HeaderName::from_static("x-tenant")),
                    catalog,
                ))
                // Stands in for authentication: every request is user #4271 of its tenant.
                .map_request(|mut request: Request<String>| {
                    let ctx = request.extensions().get::<TenantContext>().unwrap().clone();
                    let user = ctx.with_actor(Actor::user("4271", "Same Id").unwrap());
                    request.extensions_mut().insert(user);
                    request
                })
                .layer(ResponseCacheLayer::new(cache.clone(), MINUTE).per_user(true))
                .service(recent_activity);
            let get = |tenant: &tenancy_core::TenantId| {
                Request::get("/users/4271/recent_activity")
                    .header("x-tenant", tenant.as_str())
                    .body(String::new())
                    .unwrap()
            };
            for round in 0..3 {
                for (tenant, other) in [(&a, &b), (&b, &a)] {
                    let response = app.clone().oneshot(get(tenant)).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    let expected = if round == 0 { "miss" } else { "hit" };
                    assert_eq!(
                        response.headers()["x-tenancy-cache"],
                        expected,
                        "{kind:?} round {round}"
                    );
                    let text = body(response).await;
                    assert!(text.contains(tenant.as_str()), "{kind:?}: {text}");
                    assert!(!text.contains(other.as_str()), "{kind:?}: leaked {text}");
                }
            }
            assert_eq!(calls.load(Ordering::SeqCst), 2, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_request_without_a_tenant_is_refused_and_others_pass() {
        let cache = tenancy_cache::Cache::in_process();
        let mut app = ServiceBuilder::new()
            .layer(ResponseCacheLayer::new(cache, MINUTE))
            .service(service_fn(|_: Request<String>| async {
                let mut response = Response::new(String::from("hello"));
                response
                    .headers_mut()
                    .insert("set-cookie", "session=1".parse().unwrap());
                Ok::<_, Infallible>(response)
            }));
        let request = Request::get("/").body(String::new()).unwrap();
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(response).await.contains("TenantLayer"));

        let ctx = super::ctx(&tenancy_test::unique_tenant("pass"), "u1");
        for method in ["GET", "POST"] {
            let mut request = Request::builder()
                .method(method)
                .uri("/")
                .body(String::new())
                .unwrap();
            request.extensions_mut().insert(ctx.clone());
            let response = app.ready().await.unwrap().call(request).await.unwrap();
            // A response that sets a cookie is never stored; a POST never looked up.
            assert_eq!(response.headers()["x-tenancy-cache"], "pass", "{method}");
            assert_eq!(body(response).await, "hello");
        }
    }
}

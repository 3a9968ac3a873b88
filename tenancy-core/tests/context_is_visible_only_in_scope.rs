//! The ambient context follows a scoped future across awaits and threads and is visible
//! nowhere else: not to sibling futures, not to unscoped tasks on the same threads, not after
//! a panic, and nested scopes restore the outer one.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};

use tenancy_core::{Actor, ErrorKind, TenantContext, TenantId};

fn ctx(id: &str) -> TenantContext {
    TenantContext::new(TenantId::new(id).unwrap(), Actor::anonymous())
}

fn current_tenant() -> Option<String> {
    TenantContext::current()
        .ok()
        .map(|c| c.tenant().to_string())
}

#[test]
fn outside_a_scope_there_is_no_tenant() {
    let err = TenantContext::current().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentTenant);
    assert!(err.to_string().contains("ctx.scope"), "{err}");
}

#[tokio::test]
async fn scope_follows_the_future_across_awaits() {
    let acme = ctx("acme");
    acme.scope(async {
        for _ in 0..10 {
            assert_eq!(current_tenant().as_deref(), Some("acme"));
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(current_tenant(), None);
}

#[tokio::test]
async fn nested_scopes_restore_the_outer_one() {
    ctx("outer")
        .scope(async {
            ctx("inner")
                .scope(async {
                    tokio::task::yield_now().await;
                    assert_eq!(current_tenant().as_deref(), Some("inner"));
                })
                .await;
            assert_eq!(current_tenant().as_deref(), Some("outer"));
            ctx("sync-inner").in_scope(|| {
                assert_eq!(current_tenant().as_deref(), Some("sync-inner"));
            });
            assert_eq!(current_tenant().as_deref(), Some("outer"));
        })
        .await;
}

#[tokio::test]
async fn a_sibling_future_does_not_see_the_scope() {
    let scoped = ctx("acme").scope(async {
        tokio::task::yield_now().await;
        assert_eq!(current_tenant().as_deref(), Some("acme"));
    });
    let sibling = async {
        for _ in 0..5 {
            assert_eq!(current_tenant(), None, "an unscoped sibling saw a tenant");
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(scoped, sibling);
}

#[test]
fn a_panic_inside_a_scope_leaves_no_context_behind() {
    let result = catch_unwind(|| ctx("acme").in_scope(|| panic!("handler failed")));
    assert!(result.is_err());
    assert_eq!(current_tenant(), None);

    let scoped = ctx("acme").scope(async { panic!("handler failed") });
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut scoped = pin!(scoped);
        let _ = scoped
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
    }));
    assert!(result.is_err());
    assert_eq!(current_tenant(), None);

    ctx("outer").in_scope(|| {
        let inner = catch_unwind(|| ctx("inner").in_scope(|| panic!("inner failed")));
        assert!(inner.is_err());
        assert_eq!(current_tenant().as_deref(), Some("outer"));
    });
}

#[test]
fn a_dropped_scoped_future_runs_its_destructors_in_scope() {
    struct SeesTenantOnDrop(Arc<AtomicBool>);
    impl Drop for SeesTenantOnDrop {
        fn drop(&mut self) {
            self.0.store(
                current_tenant().as_deref() == Some("acme"),
                Ordering::SeqCst,
            );
        }
    }
    let saw = Arc::new(AtomicBool::new(false));
    let guard = SeesTenantOnDrop(Arc::clone(&saw));
    let mut scoped = Box::pin(ctx("acme").scope(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }));
    assert!(
        scoped
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    drop(scoped);
    assert!(
        saw.load(Ordering::SeqCst),
        "the destructor ran outside the scope"
    );
    assert_eq!(current_tenant(), None);
}

/// Many tenants' tasks share the worker threads of a multi-threaded runtime, move between
/// them at every yield, and each only ever sees its own tenant; an unscoped task on the same
/// threads sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_shared_threads_see_only_their_own_tenant() {
    let mut tasks = Vec::new();
    for n in 0..64 {
        let tenant = format!("tenant-{n}");
        let task_ctx = ctx(&tenant);
        tasks.push(task_ctx.spawn(async move {
            for _ in 0..200 {
                assert_eq!(current_tenant().as_deref(), Some(tenant.as_str()));
                tokio::task::yield_now().await;
            }
        }));
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "this test needs a task outside every scope"
    )]
    let unscoped = tokio::spawn(async {
        for _ in 0..200 {
            assert_eq!(current_tenant(), None, "an unscoped task saw a tenant");
            tokio::task::yield_now().await;
        }
    });
    for task in tasks {
        task.await.expect("a scoped task failed");
    }
    unscoped.await.expect("the unscoped task failed");
}

#[tokio::test]
async fn scoped_future_wakes_normally() {
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let waiter = ctx("acme").spawn(async move {
        let value = rx.await.unwrap();
        (value, current_tenant())
    });
    tokio::task::yield_now().await;
    tx.send(7).unwrap();
    let (value, tenant) = waiter.await.unwrap();
    assert_eq!(value, 7);
    assert_eq!(tenant.as_deref(), Some("acme"));
    assert_eq!(current_tenant(), None);
}

//! The web UI in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, with fantoccini), against the app served on a loopback port, tenants as
//! subdomains of `localhost`. Jane of acme signs in, opens a CAPA, moves it, attaches a
//! file, signs it and sees its history; Quinn, acme's QA lead, sees the verified trail;
//! then Omar of beta never sees acme's widget entries, records or files (canaries in the
//! titles and the file, searched for in every page source he gets).
//!
//! Needs `chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`): the
//! test fails, saying so, when they are missing. It writes the CAPA page's screenshot to
//! `{CARGO_TARGET_TMPDIR}/eqms-capa-page.png` (the README's picture comes from there).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use example_eqms::{Eqms, demo_password};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tenancy_test::Canaries;

mod support;
use support::DataDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// chromedriver on a loopback port of its own; killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser test needs Debian's Chromium ({INSTALL})"
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("chromedriver cannot start ({error}): the browser test needs it ({INSTALL})")
            });
        let driver = Chromedriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    async fn browser(&self) -> Client {
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,1500"],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver starts a Chromium session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app served on a loopback port; the server stops when the test's runtime ends.
async fn serve(app: &Eqms) -> u16 {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = app.router(port);
    #[expect(
        clippy::disallowed_methods,
        reason = "the server resolves each request's tenant itself; no scope to carry"
    )]
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

async fn fill(browser: &Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks what `css` finds and waits for the next page: until the old page's root element
/// is gone (a form posted back to the same URL leaves the URL as it was).
async fn click(browser: &Client, css: &str) {
    let old_page = browser.find(Locator::Css("html")).await.unwrap();
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while old_page.tag_name().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "no new page within 20 s after clicking {css}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    browser
        .wait()
        .for_element(Locator::Css("body"))
        .await
        .unwrap();
}

async fn choose(browser: &Client, css: &str, value: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap();
}

async fn sign_in(browser: &Client, base: &str, user: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    fill(browser, "input[name=user]", user).await;
    fill(browser, "input[name=password]", &demo_password(user)).await;
    click(browser, "form[action='/login'] button").await;
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/capas"),
        "{user} is signed in: {}",
        browser.source().await.unwrap()
    );
}

async fn sign_out(browser: &Client) {
    click(browser, "form[action='/logout'] button").await;
}

async fn move_to(browser: &Client, status: &str, reason: &str) {
    choose(browser, "select[name=status]", status).await;
    fill(
        browser,
        "form[action$='/status'] input[name=reason]",
        reason,
    )
    .await;
    click(browser, "form[action$='/status'] button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_works_a_capa_through_the_ui_and_another_firm_sees_none_of_it() {
    let driver = Chromedriver::start();
    let dir = DataDir::new("browser");
    let app = Eqms::open(&dir.0).await.expect("the app starts");
    let port = serve(&app).await;
    let acme = format!("http://acme.localhost:{port}");
    let beta = format!("http://beta.localhost:{port}");
    let browser = driver.browser().await;

    let mut canaries = Canaries::new("acme");
    let title = format!("Label mix-up on line 2 {}", canaries.plant());
    let description = format!("Wrong leaflet found at packing {}", canaries.plant());
    let file_content = format!("Deviation report {}\n", canaries.plant());
    let file = dir.0.join("deviation-report.txt");
    std::fs::write(&file, &file_content).unwrap();

    // Jane opens a CAPA.
    sign_in(&browser, &acme, "jane").await;
    fill(&browser, "input[name=reference]", "CAPA-2026-101").await;
    fill(&browser, "input[name=title]", &title).await;
    fill(&browser, "textarea[name=description]", &description).await;
    click(&browser, "form[action='/capas'] button").await;
    let capa_url = browser.current_url().await.unwrap();
    let capa_path = capa_url.path().to_owned();
    assert!(capa_path.starts_with("/capas/"), "{capa_url}");
    let source = browser.source().await.unwrap();
    assert!(source.contains(&title) && source.contains(&description));

    // Moves it, attaches a file, moves it to approval and signs.
    move_to(&browser, "investigating", "Root cause analysis started").await;
    fill(
        &browser,
        "input[type=file]",
        file.to_str().expect("a UTF-8 path"),
    )
    .await;
    click(&browser, "form[action$='/attachments'] button").await;
    move_to(&browser, "approval", "Corrective action in place").await;
    fill(&browser, "form[action$='/sign'] input[name=user]", "jane").await;
    fill(
        &browser,
        "form[action$='/sign'] input[name=password]",
        &demo_password("jane"),
    )
    .await;
    choose(&browser, "select[name=meaning]", "approval").await;
    fill(
        &browser,
        "form[action$='/sign'] input[name=reason]",
        "Effectiveness check passed",
    )
    .await;
    click(&browser, "form[action$='/sign'] button").await;

    let page = browser.source().await.unwrap();
    for shown in [
        "Approved by Jane Doe",
        "meaning: approval",
        "verified: bound to this record",
        "deviation-report.txt",
        "Root cause analysis started",
        "Effectiveness check passed",
        "signature",
        ">closed<",
    ] {
        assert!(
            page.contains(shown),
            "{shown} not on the CAPA page:\n{page}"
        );
    }
    let screenshot = browser.screenshot().await.unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("eqms-capa-page.png"),
        &screenshot,
    )
    .unwrap();

    // The attachment downloads whole; the widget lists the CAPA.
    click(&browser, "a[href$='/deviation-report.txt']").await;
    let download = browser.source().await.unwrap();
    assert!(download.contains(file_content.trim()), "{download}");
    browser
        .goto(&format!("{acme}/widgets/activity"))
        .await
        .unwrap();
    assert!(browser.source().await.unwrap().contains(&title));
    browser.goto(&format!("{acme}/capas")).await.unwrap();
    sign_out(&browser).await;

    // Quinn, the QA lead, sees the trail verified, with the export to download.
    sign_in(&browser, &acme, "quinn").await;
    click(&browser, "a[href='/inspector']").await;
    let inspector = browser.source().await.unwrap();
    for shown in [
        "Verified",
        "OK: tenant `acme`",
        "/api/audit/export",
        "signature",
    ] {
        assert!(
            inspector.contains(shown),
            "{shown} not in the inspector's view:\n{inspector}"
        );
    }
    let record_link = format!("href=\"{capa_path}\"");
    assert!(inspector.contains(&record_link), "{inspector}");
    sign_out(&browser).await;

    // Omar of beta: his own firm's pages, never acme's.
    sign_in(&browser, &beta, "omar").await;
    let mut seen = vec![(
        "beta's CAPA list".to_owned(),
        browser.source().await.unwrap(),
    )];
    assert!(seen[0].1.contains("Cold-chain excursion"), "{}", seen[0].1);
    for (what, url) in [
        ("beta's widget", format!("{beta}/widgets/activity")),
        ("acme's CAPA at beta's host", format!("{beta}{capa_path}")),
        (
            "acme's file at beta's host",
            format!("{beta}/api{capa_path}/attachments/deviation-report.txt"),
        ),
        ("acme's CAPA at acme's host", format!("{acme}{capa_path}")),
        (
            "acme's widget at acme's host",
            format!("{acme}/widgets/activity"),
        ),
        ("beta's inspector's view", format!("{beta}/inspector")),
    ] {
        browser.goto(&url).await.unwrap();
        seen.push((what.to_owned(), browser.source().await.unwrap()));
    }
    canaries.assert_unseen_in_all(
        seen.iter()
            .map(|(what, source)| (what.as_str(), source.as_str())),
    );
    browser.close().await.unwrap();
}

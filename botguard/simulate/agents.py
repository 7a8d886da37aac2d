"""User-agent strings, current for the simulated date.

Browser versions are derived from the simulation start (release trains of four weeks), so a log
simulated "in 2026" does not carry 2023 browsers that a detector would learn to distrust.
Since user-agent reduction many people share byte-identical agents (every Chrome on Windows of
one major version is the same string), which this reproduces: an agent string alone must not
identify a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

_CHROME_ANCHOR = (date(2026, 2, 10), 145)  # stable release dates, then every 28 days
_FIREFOX_ANCHOR = (date(2026, 2, 24), 148)
_FIREFOX_ESR = 140
_SAFARI_MAJOR_ANCHOR = (date(2025, 9, 15), 26)  # Safari 26 shipped with iOS 26; yearly after


def chrome_major(at: date) -> int:
    return _CHROME_ANCHOR[1] + (at - _CHROME_ANCHOR[0]).days // 28


def firefox_major(at: date) -> int:
    return _FIREFOX_ANCHOR[1] + (at - _FIREFOX_ANCHOR[0]).days // 28


def safari_version(at: date) -> tuple[int, int]:
    days = (at - _SAFARI_MAJOR_ANCHOR[0]).days
    return _SAFARI_MAJOR_ANCHOR[1] + days // 365, min(6, (days % 365) // 55)


def chrome_build(major: int, patch: int) -> str:
    """A plausible full Chrome version (``145.0.7632.109``) for agents that are not reduced."""
    return f"{major}.0.{6778 + (major - 131) * 61}.{patch}"


_WIN = "Windows NT 10.0; Win64; x64"
_MAC = "Macintosh; Intel Mac OS X 10_15_7"
_WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SAFARI_WEBKIT = "AppleWebKit/605.1.15 (KHTML, like Gecko)"


def _browser_family_agents(at: date) -> list[tuple[str, float]]:
    """(agent, share) for each browser/OS family and recent version; shares sum to ~1."""
    chrome = chrome_major(at)
    firefox = firefox_major(at)
    safari, safari_minor = safari_version(at)
    # most people run the current or previous major, a tail lags behind
    lag = ((0, 0.55), (1, 0.27), (2, 0.09), (3, 0.05), (5, 0.04))
    out: list[tuple[str, float]] = []

    def chromium(share: float, template: str) -> None:
        for back, w in lag:
            v = chrome - back
            out.append((template.format(v=v, full=chrome_build(v, 70 + 13 * back)), share * w))

    chromium(0.30, f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} Chrome/{{v}}.0.0.0 Mobile "
                   "Safari/537.36")
    chromium(0.20, f"Mozilla/5.0 ({_WIN}) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36")
    chromium(0.06, f"Mozilla/5.0 ({_MAC}) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36")
    chromium(0.01, f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36")
    for back, w in lag:  # Edge still sends its full version
        v = chrome - back
        for patch in (58, 83, 112):
            out.append((f"Mozilla/5.0 ({_WIN}) {_WEBKIT} Chrome/{v}.0.0.0 Safari/537.36 "
                        f"Edg/{v}.0.{2903 + (v - 131) * 60}.{patch}", 0.02 * w))
    chromium(0.02, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) "
                   f"{_SAFARI_WEBKIT} CriOS/{{full}} Mobile/15E148 Safari/604.1")
    for sam in (27, 28, 29):
        chromium(0.01, f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} SamsungBrowser/{sam}.0 "
                       "Chrome/{v}.0.0.0 Mobile Safari/537.36")

    # people update iOS quickly: the newest minor release has most of the current major
    minor_w = [2.0**m for m in range(safari_minor + 1)]
    ios = [(f"{safari}.{m}", "18_6", 0.7 * w / sum(minor_w)) for m, w in enumerate(minor_w)]
    ios += [("18.6", "18_6", 0.15), ("18.5", "18_5", 0.08), ("17.6", "17_6_1", 0.07)]
    for version, os_version, w in ios:
        out.append((f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_version} like Mac OS X) "
                    f"{_SAFARI_WEBKIT} Version/{version} Mobile/15E148 Safari/604.1", 0.22 * w))
        out.append((f"Mozilla/5.0 ({_MAC}) {_SAFARI_WEBKIT} Version/{version} "
                    "Safari/605.1.15", 0.05 * w))

    for back, w in ((0, 0.6), (1, 0.25), (firefox - _FIREFOX_ESR, 0.15)):
        v = firefox - back
        out.append((f"Mozilla/5.0 ({_WIN}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", 0.03 * w))
        out.append((f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:{v}.0) Gecko/20100101 "
                    f"Firefox/{v}.0", 0.01 * w))
        out.append((f"Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
                    0.004 * w))
        out.append((f"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 "
                    f"Firefox/{v}.0", 0.003 * w))
        out.append((f"Mozilla/5.0 (Android 15; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0",
                    0.005 * w))
    return out


#: Devices that stopped getting browser updates years ago (still in people's hands), with
#: their share among old agents: iPhones stuck on iOS 12/15/16, Windows 7 on Chrome 109 or
#: Firefox ESR 115, High Sierra on Chrome 116, Android 6/7 phones, an old Samsung Internet.
_OLD_BROWSERS: tuple[tuple[str, float], ...] = (
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1", 0.08),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 15_8_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/15.6.6 Mobile/15E148 Safari/604.1", 0.14),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/16.6.1 Mobile/15E148 Safari/604.1", 0.16),
    ("Mozilla/5.0 (iPad; CPU OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/12.1.2 Mobile/15E148 Safari/604.1", 0.04),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/15.6.1 Safari/605.1.15", 0.07),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/14.1.2 Safari/605.1.15", 0.03),
    (f"Mozilla/5.0 (Windows NT 6.1; Win64; x64) {_WEBKIT} Chrome/109.0.0.0 Safari/537.36", 0.12),
    ("Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0", 0.06),
    (f"Mozilla/5.0 ({_MAC}) {_WEBKIT} Chrome/116.0.0.0 Safari/537.36", 0.05),
    (f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} Chrome/119.0.0.0 Mobile Safari/537.36", 0.12),
    (f"Mozilla/5.0 (Linux; Android 6.0.1; SM-G920F) {_WEBKIT} Chrome/106.0.5249.126 Mobile "
     "Safari/537.36", 0.05),
    (f"Mozilla/5.0 (Linux; Android 9; SM-A505FN) {_WEBKIT} SamsungBrowser/14.2 "
     "Chrome/87.0.4280.141 Mobile Safari/537.36", 0.05),
    (f"Mozilla/5.0 (X11; CrOS x86_64 14816.131.0) {_WEBKIT} Chrome/103.0.5060.132 "
     "Safari/537.36", 0.03),
)

#: Agents seen behind corporate proxies: IE mode with the tokens installed software adds,
#: Outlook opening a link itself (``ms-office``), terminal servers on Windows Server 2012 R2
#: stuck at Chrome 109, and managed Firefox ESR.
_CORPORATE: tuple[tuple[str, float], ...] = (
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; .NET CLR 2.0.50727; "
     ".NET CLR 3.0.30729; .NET CLR 3.5.30729; rv:11.0) like Gecko", 0.2),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; Touch; .NET4.0C; .NET4.0E; "
     "Tablet PC 2.0; Zoom 3.6.0; rv:11.0) like Gecko", 0.1),
    ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; "
     ".NET4.0E; Microsoft Outlook 16.0.18025; ms-office; MSOffice 16)", 0.25),
    (f"Mozilla/5.0 (Windows NT 6.3; Win64; x64) {_WEBKIT} Chrome/109.0.0.0 Safari/537.36", 0.2),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", 0.25),
)
#: Index in ``_CORPORATE`` of Outlook's own fetch: one page, no assets.
OFFICE_PREFETCH = 2

_APP_ANCHOR = date(2023, 9, 27)  # Instagram 300, Facebook 432, TikTok 31, Google app 283


def _in_app_agents(at: date) -> list[tuple[str, str | None, float]]:
    """(agent, referer the app's link shim sends or None, share) of in-app browsers."""
    weeks = max(0, (at - _APP_ANCHOR).days // 7)
    ig, fb, gsa = 300 + weeks, 432 + weeks, 283 + weeks
    tiktok = 31 + weeks * 5 // 52  # about five majors a year
    full = chrome_build(chrome_major(at), 135)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 " \
             "(KHTML, like Gecko)"
    webview = "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0"
    return [
        (f"{iphone} Mobile/22G86 Instagram {ig}.0.0.28.85 (iPhone16,2; iOS 18_6; en_US; en; "
         "scale=3.00; 1290x2796; 751873405)", "https://l.instagram.com/", 0.20),
        (f"Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) {webview} "
         f"Chrome/{full} Mobile Safari/537.36 Instagram {ig}.0.0.43.81 Android (34/14; 450dpi; "
         "1080x2340; samsung; SM-S918B; dm3q; qcom; en_GB; 751873611)",
         "https://l.instagram.com/", 0.17),
        (f"{iphone} Mobile/22G86 [FBAN/FBIOS;FBAV/{fb}.0.0.38.101;FBBV/{700000000 + weeks * 997};"
         "FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/18.6;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
         "https://m.facebook.com/", 0.12),
        (f"Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) {webview} "
         f"Chrome/{full} Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/{fb}.0.0.52.109;]",
         "https://l.facebook.com/", 0.14),
        (f"{iphone} Mobile/15E148 musical_ly_{tiktok}.5.0 JsSdk/2.0 NetType/WIFI "
         "Channel/App Store ByteLocale/en Region/US isDarkMode/0 WKWebView/1 "
         "BytedanceWebview/d8a21c6", "https://www.tiktok.com/", 0.12),
        (f"{iphone} Mobile/15E148 [Pinterest/iOS]", "https://www.pinterest.com/", 0.06),
        (f"{iphone} GSA/{gsa}.0.{600000000 + weeks * 4111} Mobile/15E148 Safari/604.1",
         "https://www.google.com/", 0.10),
        (f"{iphone} Mobile/15E148 Snapchat/13.{weeks % 60 + 10}.0.41 "
         "(like Safari/8621.1.15.10.7, panda)", None, 0.04),
        (f"{iphone} Mobile/15E148 [LinkedInApp]/9.31.{2000 + weeks}", "https://www.linkedin.com/",
         0.05),
    ]


def _preview_agents(at: date) -> dict[str, list[str]]:
    """Link-preview fetchers and feed readers by service."""
    whatsapp = f"WhatsApp/2.{at.year % 100}.{(at.month * 2) % 25 + 1}"
    return {
        "facebook": ["facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"],
        "twitter": ["Twitterbot/1.0"],
        "slack": ["Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"],
        "whatsapp": [f"{whatsapp}.78 A", f"{whatsapp}.74 i"],
        "telegram": ["TelegramBot (like TwitterBot)"],
        "discord": ["Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"],
        "linkedin": ["LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient "
                     "+http://www.linkedin.com)"],
        # iMessage builds its preview on the sender's device and names two crawlers at once
        "imessage": ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 "
                     "(KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 "
                     "Facebot Twitterbot/1.0"],
        "feed": ["Feedly/1.0 (+https://feedly.com/poller.html; 4 subscribers; )",
                 "Mozilla/5.0 (compatible; inoreader.com; 2 subscribers)"],
    }


@dataclass(frozen=True)
class AgentPools:
    """Agent strings by purpose; ``browsers_p`` are the market shares of ``browsers``."""

    browsers: list[str]
    browsers_p: np.ndarray
    old_browsers: list[str]  # people on devices that no longer update
    old_browsers_p: np.ndarray
    corporate: list[str]  # odd agents behind corporate proxies
    corporate_p: np.ndarray
    in_app: list[str]  # social apps' built-in browsers
    in_app_p: np.ndarray
    in_app_referer: list[str | None]  # what each app's link shim sends as referer
    preview: dict[str, list[str]]  # link previews and feed readers by service
    stale_browsers: list[str]  # what scrapers copy from old blog posts
    googlebot: list[str]
    bingbot: list[str]
    monitor: list[str]
    libraries: list[str]
    headless: list[str]
    scanners: list[str]
    poller_custom: list[str]


def agent_pools(at: date) -> AgentPools:
    family = _browser_family_agents(at)
    merged: dict[str, float] = {}
    for agent, share in family:
        merged[agent] = merged.get(agent, 0.0) + share
    browsers = list(merged)
    p = np.array([merged[a] for a in browsers])
    chrome = chrome_major(at)
    gb_chrome = chrome_build(chrome - 1, 108)
    bing_chrome = f"{chrome - 2}.0.0.0"
    stale = [
        f"Mozilla/5.0 ({_WIN}) {_WEBKIT} Chrome/{v}.0.0.0 Safari/537.36"
        for v in (chrome - 12, chrome - 19, chrome - 26, 120, 114)
    ] + [
        f"Mozilla/5.0 ({_WIN}) {_WEBKIT} Chrome/{chrome_build(v, 93)} Safari/537.36"
        for v in (chrome - 9, 124, 109)
    ] + [
        f"Mozilla/5.0 ({_MAC}) {_WEBKIT} Chrome/{chrome - 15}.0.0.0 Safari/537.36",
        f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} Chrome/{chrome - 7}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/109.0.0.0 Safari/537.36",
    ]
    in_app = _in_app_agents(at)

    def shares(rows: list[tuple[str, float]] | tuple[tuple[str, float], ...]) -> np.ndarray:
        w = np.array([x[-1] for x in rows])
        return np.asarray(w / w.sum())

    return AgentPools(
        browsers=browsers,
        browsers_p=p / p.sum(),
        old_browsers=[a for a, _ in _OLD_BROWSERS],
        old_browsers_p=shares(_OLD_BROWSERS),
        corporate=[a for a, _ in _CORPORATE],
        corporate_p=shares(_CORPORATE),
        in_app=[a for a, _, _ in in_app],
        in_app_p=shares([(a, w) for a, _, w in in_app]),
        in_app_referer=[r for _, r, _ in in_app],
        preview=_preview_agents(at),
        stale_browsers=stale,
        googlebot=[
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) Chrome/{gb_chrome} Mobile Safari/537.36 (compatible; "
            "Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
            f"+http://www.google.com/bot.html) Chrome/{gb_chrome} Safari/537.36",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ],
        bingbot=[
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
            f"+http://www.bing.com/bingbot.htm) Chrome/{bing_chrome} Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 7_0 like Mac OS X) AppleWebKit/537.51.1 (KHTML, "
            "like Gecko) Version/7.0 Mobile/11A465 Safari/9537.53 (compatible; bingbot/2.0; "
            "+http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        ],
        monitor=["Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"],
        libraries=[
            "python-requests/2.32.3", "python-requests/2.31.0", "python-requests/2.32.4",
            "Go-http-client/1.1", "Go-http-client/2.0", "curl/8.5.0", "curl/7.81.0",
            "curl/8.11.1", "okhttp/4.12.0", "okhttp/3.14.9", "axios/1.7.9", "axios/1.8.4",
            "Scrapy/2.11.2 (+https://scrapy.org)", "Scrapy/2.13.3 (+https://scrapy.org)",
            "python-httpx/0.28.1", "Python/3.12 aiohttp/3.11.18", "Python-urllib/3.11",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "Apache-HttpClient/4.5.14 (Java/17.0.12)", "Wget/1.21.4",
        ],
        headless=[
            f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} HeadlessChrome/{chrome_build(chrome, 7)}"
            " Safari/537.36",
            f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} HeadlessChrome/"
            f"{chrome_build(chrome - 4, 52)} Safari/537.36",
            f"Mozilla/5.0 ({_WIN}) {_WEBKIT} HeadlessChrome/{chrome - 1}.0.0.0 Safari/537.36",
            f"Mozilla/5.0 ({_MAC}) {_WEBKIT} HeadlessChrome/{chrome_build(chrome - 2, 86)} "
            "Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
            "PhantomJS/2.1.1 Safari/538.1",
        ],
        scanners=[
            "Mozilla/5.0 zgrab/0.x",
            "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)",
            "sqlmap/1.8.11#stable (https://sqlmap.org)",
            "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
            "Mozilla/5.0 (l9scan/2.0.134323e2033313e2436313e2430323; +https://leakix.net)",
            "WPScan v3.8.27 (https://wpscan.com/wordpress-security-scanner)",
            "Fuzz Faster U Fool v2.1.0-dev",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            f"Mozilla/5.0 ({_WIN}) {_WEBKIT} Chrome/81.0.4044.129 Safari/537.36",
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        ],
        poller_custom=[
            "python-requests/2.32.3", "Go-http-client/2.0", "axios/1.7.9",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "Mozilla/5.0 (compatible; PriceWatch/3.1; +https://pricewatch.example/bot)",
        ],
    )

"""The kinds of simulated clients and the label each one carries in ``labels.csv``.

People come in several kinds so that a detector's mistakes can be reported by behaviour:

* ``human`` — a first-time visitor browsing several pages on a cold cache (a few read 20-60
  pages in one sitting);
* ``bouncer`` — one page (with or without its assets) or two or three, then gone;
* ``returning`` — a regular whose browser cache still holds the theme: few or no assets, 304s;
* ``in_app`` — a link opened in a social app's built-in browser (Instagram, Facebook, TikTok);
* ``hotlink`` — one stray request: an image embedded elsewhere, a page in someone's iframe, a
  bare ``/favicon.ico`` or ``/robots.txt``;
* ``shared_nat`` — a carrier-NAT or office-proxy address many people share;
* ``vpn`` — a person on a VPN exit in a cloud network.

``preview`` are declared, benign fetchers: link previews (facebookexternalhit, Slackbot,
WhatsApp, Twitterbot, ...) fetching one page now and then, and feed readers polling the feed.
"""

from __future__ import annotations

HUMAN, GOOD_BOT, BAD_BOT = "human", "good_bot", "bad_bot"

#: kind -> label, in the order labels and summaries list them.
KIND_LABELS: dict[str, str] = {
    "human": HUMAN,
    "bouncer": HUMAN,
    "returning": HUMAN,
    "in_app": HUMAN,
    "hotlink": HUMAN,
    "shared_nat": HUMAN,
    "vpn": HUMAN,
    "googlebot": GOOD_BOT,
    "bingbot": GOOD_BOT,
    "monitor": GOOD_BOT,
    "preview": GOOD_BOT,
    "library_scraper": BAD_BOT,
    "browser_crawler_fast": BAD_BOT,
    "browser_crawler_slow": BAD_BOT,
    "ua_rotator": BAD_BOT,
    "headless": BAD_BOT,
    "fake_googlebot": BAD_BOT,
    "price_poller": BAD_BOT,
    "swarm": BAD_BOT,
    "probe": BAD_BOT,
}
KINDS: tuple[str, ...] = tuple(KIND_LABELS)

#: Share of ``clients`` per kind within its label (before the minimum of one per kind).
#: People on their own address (carrier NAT and VPN are carved out first):
HUMAN_MIX = {"human": 0.30, "bouncer": 0.22, "returning": 0.30, "in_app": 0.10, "hotlink": 0.06}
GOOD_BOT_MIX = {"googlebot": 0.38, "bingbot": 0.25, "monitor": 0.20, "preview": 0.17}
BAD_BOT_MIX = {
    "library_scraper": 0.20,
    "browser_crawler_fast": 0.115,
    "browser_crawler_slow": 0.125,
    "ua_rotator": 0.085,
    "headless": 0.08,
    "fake_googlebot": 0.07,
    "price_poller": 0.12,
    "swarm": 0.015,  # one swarm is 30-200 addresses
    "probe": 0.19,
}
HUMAN_SHARE = 0.70
GOOD_BOT_SHARE = 0.075


def _split(total: int, mix: dict[str, float], minimum: int) -> dict[str, int]:
    """Largest-remainder split of ``total`` by ``mix`` with ``minimum`` per kind when it fits."""
    floor = minimum if total >= minimum * len(mix) else 0
    rest = total - floor * len(mix)
    raw = {k: rest * w / sum(mix.values()) for k, w in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    by_remainder = sorted(mix, key=lambda k: (counts[k] - raw[k], list(mix).index(k)))
    for k in by_remainder[: rest - sum(counts.values())]:
        counts[k] += 1
    return {k: counts[k] + floor for k in mix}


def kind_counts(clients: int) -> dict[str, int]:
    """How many clients (actors) of each kind ``clients`` buys; every kind once N >= 100.

    A carrier-NAT address (many people) and a swarm (many addresses) each count as one client.
    """
    if clients < 0:
        raise ValueError(f"clients must be >= 0, got {clients}")
    humans = round(clients * HUMAN_SHARE)
    good = round(clients * GOOD_BOT_SHARE)
    bad = clients - humans - good
    nat = min(max(2, round(clients * 0.008)), humans // 10) if humans >= 20 else 0
    vpn = min(max(2, round(clients * 0.03)), humans // 10) if humans >= 20 else 0
    counts = _split(humans - nat - vpn, HUMAN_MIX, 1) | {"shared_nat": nat, "vpn": vpn}
    counts |= _split(good, GOOD_BOT_MIX, 1)
    counts |= _split(bad, BAD_BOT_MIX, 1)
    return {k: counts[k] for k in KINDS}

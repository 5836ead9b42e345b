//! The simulated administration: agencies, the procedures they publish, and the words used in
//! events. Codes follow the national formats (MaDonVi, MaTTHC) but are illustrative, not the
//! official code lists.
//!
//! The country is today's: the 34 provinces and their communes of `schemas/units/vn.json`
//! (`socai_metrics::units`). Agency codes, per province token `Hnn`:
//! - provincial departments `000.00.<dd>.H<nn>`: 12 Sở Tư pháp, 15 Sở Xây dựng, 16 Sở Tài chính,
//!   20 Sở Nội vụ, 21 Sở Nông nghiệp và Môi trường;
//! - the provincial police `G09.<nn>` (a ministry's provincial branch, "G09.20"-style);
//! - the communes' People's Committees, with the `agency` code of the units file
//!   (`000.<cc>.<dd>.H<nn>`, cc ≥ 01).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceLevel {
    FullOnline,
    PartialOnline,
    Offline,
}

impl ServiceLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceLevel::FullOnline => "full_online",
            ServiceLevel::PartialOnline => "partial_online",
            ServiceLevel::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duration {
    Hours(u32),
    WorkingDays(u32),
}

/// A procedure as published by an agency.
#[derive(Debug, Clone, Copy)]
pub struct Procedure {
    pub code: &'static str,
    pub name: &'static str,
    pub field: &'static str,
    pub level: ServiceLevel,
    /// 0 = no fee.
    pub fee_vnd: u64,
    /// Name and number symbol of the result document; `None` = result_kind none.
    pub result: Option<(&'static str, &'static str)>,
    pub duration: Duration,
    /// Relative popularity (dossiers per working day, roughly).
    pub weight: u32,
    /// Filed by businesses rather than citizens.
    pub business: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgencyKind {
    Justice,
    Construction,
    Finance,
    HomeAffairs,
    AgricultureEnvironment,
    Police,
    Commune,
}

/// A province's own agencies (departments and the police), in order; its communes follow them.
pub const DEPARTMENTS: [AgencyKind; 6] = [
    AgencyKind::Justice,
    AgencyKind::Construction,
    AgencyKind::Finance,
    AgencyKind::HomeAffairs,
    AgencyKind::AgricultureEnvironment,
    AgencyKind::Police,
];

impl AgencyKind {
    /// MaDonVi of a department or the police of the province with token `Hnn`; `None` for a
    /// commune (its code comes from the units file).
    pub fn code(self, token: &str) -> Option<String> {
        let nn = token.strip_prefix('H').unwrap_or(token);
        let dd = match self {
            AgencyKind::Justice => 12,
            AgencyKind::Construction => 15,
            AgencyKind::Finance => 16,
            AgencyKind::HomeAffairs => 20,
            AgencyKind::AgricultureEnvironment => 21,
            AgencyKind::Police => return Some(format!("G09.{nn}")),
            AgencyKind::Commune => return None,
        };
        Some(format!("000.00.{dd}.H{nn}"))
    }

    /// How many procedures an agency of this kind publishes when asked for `wanted`: communes
    /// run only the listed commune procedures; departments add synthetic ones beyond theirs.
    pub fn offered(self, wanted: usize) -> usize {
        match self {
            AgencyKind::Commune => wanted.min(COMMUNE.len()),
            _ => wanted,
        }
    }

    pub fn procedures(self) -> &'static [Procedure] {
        match self {
            AgencyKind::Justice => JUSTICE,
            AgencyKind::Construction => CONSTRUCTION,
            AgencyKind::Finance => FINANCE,
            AgencyKind::HomeAffairs => HOME_AFFAIRS,
            AgencyKind::AgricultureEnvironment => AGRICULTURE_ENVIRONMENT,
            AgencyKind::Police => POLICE,
            AgencyKind::Commune => COMMUNE,
        }
    }

    /// Digit used in the codes of this kind's synthetic procedures (beyond the listed ones).
    pub fn digit(self) -> u32 {
        self as u32 + 1
    }

    pub fn field(self) -> &'static str {
        match self {
            AgencyKind::Justice => "Tư pháp",
            AgencyKind::Construction => "Xây dựng",
            AgencyKind::Finance => "Tài chính",
            AgencyKind::HomeAffairs => "Nội vụ",
            AgencyKind::AgricultureEnvironment => "Nông nghiệp và Môi trường",
            AgencyKind::Police => "Trật tự xã hội",
            AgencyKind::Commune => "Hành chính cấp xã",
        }
    }

    pub fn handler_units(self) -> &'static [&'static str] {
        match self {
            AgencyKind::Justice => &[
                "Phòng Hành chính tư pháp",
                "Phòng Lý lịch tư pháp",
                "Phòng Bổ trợ tư pháp",
            ],
            AgencyKind::Construction => &[
                "Phòng Quản lý hoạt động xây dựng",
                "Phòng Quản lý phương tiện và người lái",
                "Phòng Quản lý vận tải",
            ],
            AgencyKind::Finance => &[
                "Phòng Đăng ký kinh doanh",
                "Phòng Quản lý đầu tư",
                "Phòng Tài chính ngân sách",
            ],
            AgencyKind::HomeAffairs => &[
                "Phòng Lao động - Việc làm",
                "Phòng Người có công",
                "Trung tâm Dịch vụ việc làm",
            ],
            AgencyKind::AgricultureEnvironment => &[
                "Văn phòng Đăng ký đất đai",
                "Phòng Môi trường",
                "Chi cục Quản lý chất lượng nông lâm thủy sản",
            ],
            AgencyKind::Police => &[
                "Phòng Cảnh sát quản lý hành chính về trật tự xã hội",
                "Phòng Quản lý xuất nhập cảnh",
                "Phòng Cảnh sát giao thông",
            ],
            AgencyKind::Commune => &[
                "Bộ phận Tư pháp - Hộ tịch",
                "Bộ phận Tiếp nhận và Trả kết quả",
                "Phòng Kinh tế",
            ],
        }
    }

    /// The unit that receives dossiers (bộ phận một cửa).
    pub fn reception_unit(self) -> &'static str {
        match self {
            AgencyKind::Police => "Bộ phận Một cửa Công an tỉnh",
            AgencyKind::Commune => "Bộ phận Tiếp nhận và Trả kết quả cấp xã",
            _ => "Trung tâm Phục vụ hành chính công tỉnh",
        }
    }

    pub fn signers(self) -> &'static [&'static str] {
        match self {
            AgencyKind::Justice => &["Phó Giám đốc Sở Tư pháp", "Giám đốc Sở Tư pháp"],
            AgencyKind::Construction => &["Phó Giám đốc Sở Xây dựng", "Giám đốc Sở Xây dựng"],
            AgencyKind::Finance => &[
                "Trưởng phòng Đăng ký kinh doanh",
                "Phó Giám đốc Sở Tài chính",
            ],
            AgencyKind::HomeAffairs => &[
                "Phó Giám đốc Sở Nội vụ",
                "Giám đốc Trung tâm Dịch vụ việc làm",
            ],
            AgencyKind::AgricultureEnvironment => &[
                "Giám đốc Văn phòng Đăng ký đất đai",
                "Phó Giám đốc Sở Nông nghiệp và Môi trường",
            ],
            AgencyKind::Police => &[
                "Trưởng phòng Cảnh sát QLHC về TTXH",
                "Phó Giám đốc Công an tỉnh",
            ],
            AgencyKind::Commune => &[
                "Chủ tịch Ủy ban nhân dân xã",
                "Phó Chủ tịch Ủy ban nhân dân xã",
            ],
        }
    }
}

#[allow(clippy::too_many_arguments)] // a table row
const fn p(
    code: &'static str,
    name: &'static str,
    field: &'static str,
    level: ServiceLevel,
    fee_vnd: u64,
    result: Option<(&'static str, &'static str)>,
    duration: Duration,
    weight: u32,
    business: bool,
) -> Procedure {
    Procedure {
        code,
        name,
        field,
        level,
        fee_vnd,
        result,
        duration,
        weight,
        business,
    }
}

use Duration::{Hours, WorkingDays as Wd};
use ServiceLevel::{FullOnline as Full, Offline, PartialOnline as Partial};

#[rustfmt::skip]
const COMMUNE: &[Procedure] = &[
    p("2.000815", "Chứng thực bản sao từ bản chính giấy tờ, văn bản", "Chứng thực", Partial, 2_000, Some(("Bản sao chứng thực", "SCT")), Hours(8), 120, false),
    p("1.001193", "Đăng ký khai sinh", "Hộ tịch", Full, 0, Some(("Giấy khai sinh", "GKS")), Wd(1), 100, false),
    p("1.004873", "Cấp Giấy xác nhận tình trạng hôn nhân", "Hộ tịch", Full, 3_000, Some(("Giấy xác nhận tình trạng hôn nhân", "XNHN")), Wd(3), 40, false),
    p("2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản", "Chứng thực", Offline, 10_000, Some(("Văn bản chứng thực chữ ký", "CTCK")), Hours(8), 40, false),
    p("1.004227", "Cấp bản sao Trích lục hộ tịch", "Hộ tịch", Full, 8_000, Some(("Trích lục hộ tịch", "TLHT")), Wd(1), 35, false),
    p("1.000656", "Đăng ký khai tử", "Hộ tịch", Full, 0, Some(("Trích lục khai tử", "TLKT")), Wd(1), 30, false),
    p("2.000720", "Đăng ký thành lập hộ kinh doanh", "Thành lập và hoạt động của hộ kinh doanh", Full, 100_000, Some(("Giấy chứng nhận đăng ký hộ kinh doanh", "GCN-HKD")), Wd(3), 30, true),
    p("1.000894", "Đăng ký kết hôn", "Hộ tịch", Partial, 0, Some(("Giấy chứng nhận kết hôn", "GCNKH")), Wd(1), 25, false),
    p("1.001758", "Đăng ký cấp thẻ bảo hiểm y tế cho trẻ em dưới 6 tuổi", "Bảo hiểm y tế", Full, 0, Some(("Thẻ bảo hiểm y tế", "BHYT")), Wd(5), 20, false),
    p("1.001776", "Giải quyết trợ cấp xã hội hằng tháng", "Bảo trợ xã hội", Partial, 0, Some(("Quyết định trợ cấp xã hội", "QĐ-TCXH")), Wd(15), 10, false),
    p("1.002255", "Hòa giải tranh chấp đất đai", "Đất đai", Offline, 0, None, Wd(30), 3, false),
];

#[rustfmt::skip]
const POLICE: &[Procedure] = &[
    p("1.004194", "Đăng ký thường trú", "Đăng ký, quản lý cư trú", Full, 20_000, None, Wd(7), 60, false),
    p("1.004222", "Đăng ký tạm trú", "Đăng ký, quản lý cư trú", Full, 15_000, None, Wd(3), 50, false),
    p("2.001158", "Cấp đổi thẻ căn cước", "Căn cước", Partial, 50_000, Some(("Thẻ căn cước", "CC")), Wd(7), 40, false),
    p("1.011609", "Đăng ký xe lần đầu", "Đăng ký, quản lý phương tiện giao thông", Partial, 500_000, Some(("Chứng nhận đăng ký xe", "ĐKX")), Wd(2), 35, false),
    p("1.002369", "Cấp hộ chiếu phổ thông ở trong nước", "Quản lý xuất nhập cảnh", Full, 200_000, Some(("Hộ chiếu phổ thông", "HC")), Wd(8), 30, false),
    p("1.010021", "Xác nhận thông tin về cư trú", "Đăng ký, quản lý cư trú", Full, 0, Some(("Giấy xác nhận thông tin về cư trú", "XNCT")), Hours(8), 25, false),
    p("1.001612", "Xóa đăng ký thường trú", "Đăng ký, quản lý cư trú", Full, 0, None, Wd(2), 15, false),
];

#[rustfmt::skip]
const JUSTICE: &[Procedure] = &[
    p("2.001879", "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam", "Lý lịch tư pháp", Full, 200_000, Some(("Phiếu lý lịch tư pháp", "LLTP")), Wd(10), 60, false),
    p("2.002189", "Chứng thực hợp đồng, giao dịch liên quan đến tài sản", "Chứng thực", Partial, 50_000, Some(("Hợp đồng được chứng thực", "HĐCT")), Wd(2), 10, false),
    p("1.000414", "Đăng ký khai sinh có yếu tố nước ngoài", "Hộ tịch", Partial, 0, Some(("Giấy khai sinh", "GKS-NN")), Wd(3), 8, false),
    p("1.001878", "Cấp chứng chỉ hành nghề luật sư", "Luật sư", Partial, 800_000, Some(("Chứng chỉ hành nghề luật sư", "CCLS")), Wd(20), 3, false),
    p("1.008901", "Đăng ký hoạt động văn phòng công chứng", "Công chứng", Offline, 1_000_000, Some(("Giấy đăng ký hoạt động", "ĐKHĐ")), Wd(10), 2, true),
    p("2.000528", "Thôi quốc tịch Việt Nam ở trong nước", "Quốc tịch", Offline, 2_500_000, Some(("Quyết định cho thôi quốc tịch", "QĐ-TQT")), Wd(60), 2, false),
];

#[rustfmt::skip]
const FINANCE: &[Procedure] = &[
    p("2.001203", "Đăng ký thay đổi nội dung đăng ký doanh nghiệp", "Thành lập và phát triển doanh nghiệp", Full, 50_000, Some(("Giấy chứng nhận đăng ký doanh nghiệp", "GCN-ĐKDN")), Wd(3), 40, true),
    p("2.002034", "Đăng ký thành lập công ty TNHH một thành viên", "Thành lập và phát triển doanh nghiệp", Full, 50_000, Some(("Giấy chứng nhận đăng ký doanh nghiệp", "GCN-ĐKDN")), Wd(3), 35, true),
    p("2.001610", "Đăng ký thành lập doanh nghiệp tư nhân", "Thành lập và phát triển doanh nghiệp", Full, 50_000, Some(("Giấy chứng nhận đăng ký doanh nghiệp", "GCN-ĐKDN")), Wd(3), 25, true),
    p("2.002061", "Thông báo tạm ngừng kinh doanh", "Thành lập và phát triển doanh nghiệp", Full, 0, None, Wd(3), 20, true),
    p("1.005428", "Đăng ký mã số đơn vị có quan hệ với ngân sách", "Tài chính ngân sách", Full, 0, Some(("Giấy chứng nhận mã số ĐVQHNS", "MSNS")), Wd(2), 6, true),
    p("2.001583", "Cấp Giấy chứng nhận đăng ký đầu tư", "Đầu tư tại Việt Nam", Partial, 0, Some(("Giấy chứng nhận đăng ký đầu tư", "GCN-ĐKĐT")), Wd(15), 5, true),
];

#[rustfmt::skip]
const CONSTRUCTION: &[Procedure] = &[
    p("1.002809", "Đổi giấy phép lái xe do ngành Giao thông vận tải cấp", "Đường bộ", Full, 135_000, Some(("Giấy phép lái xe", "GPLX")), Wd(5), 60, false),
    p("1.009972", "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ", "Hoạt động xây dựng", Partial, 75_000, Some(("Giấy phép xây dựng", "GPXD")), Wd(15), 15, false),
    p("1.001777", "Cấp lại giấy phép lái xe", "Đường bộ", Partial, 135_000, Some(("Giấy phép lái xe", "GPLX")), Wd(10), 10, false),
    p("1.002861", "Cấp chứng chỉ hành nghề hoạt động xây dựng hạng II, hạng III", "Hoạt động xây dựng", Partial, 300_000, Some(("Chứng chỉ hành nghề", "CCHN")), Wd(20), 8, false),
    p("1.004963", "Cấp giấy phép kinh doanh vận tải bằng xe ô tô", "Đường bộ", Full, 200_000, Some(("Giấy phép kinh doanh vận tải", "GPKDVT")), Wd(5), 8, true),
];

#[rustfmt::skip]
const HOME_AFFAIRS: &[Procedure] = &[
    p("1.000105", "Giải quyết hưởng trợ cấp thất nghiệp", "Việc làm", Partial, 0, Some(("Quyết định hưởng trợ cấp thất nghiệp", "QĐ-TCTN")), Wd(20), 30, false),
    p("2.000205", "Cấp giấy phép lao động cho người lao động nước ngoài làm việc tại Việt Nam", "Việc làm", Full, 600_000, Some(("Giấy phép lao động", "GPLĐ")), Wd(5), 12, true),
    p("1.010803", "Giải quyết chế độ trợ cấp đối với người có công", "Người có công", Partial, 0, Some(("Quyết định trợ cấp", "QĐ-NCC")), Wd(20), 8, false),
    p("1.001823", "Đăng ký nội quy lao động", "Lao động", Partial, 0, None, Wd(7), 6, true),
    p("1.003347", "Công nhận ban vận động thành lập hội", "Tổ chức phi chính phủ", Offline, 0, Some(("Quyết định công nhận", "QĐ-BVĐ")), Wd(30), 2, true),
];

#[rustfmt::skip]
const AGRICULTURE_ENVIRONMENT: &[Procedure] = &[
    p("1.012790", "Đăng ký biến động quyền sử dụng đất do chuyển nhượng, tặng cho, thừa kế", "Đất đai", Partial, 50_000, Some(("Giấy chứng nhận quyền sử dụng đất", "GCN-QSDĐ")), Wd(10), 40, false),
    p("1.012756", "Đăng ký đất đai, cấp Giấy chứng nhận quyền sử dụng đất lần đầu", "Đất đai", Partial, 100_000, Some(("Giấy chứng nhận quyền sử dụng đất", "GCN-QSDĐ")), Wd(20), 25, false),
    p("1.004983", "Cấp giấy chứng nhận cơ sở đủ điều kiện an toàn thực phẩm nông, lâm, thủy sản", "Quản lý chất lượng", Partial, 700_000, Some(("Giấy chứng nhận ATTP", "ATTP")), Wd(15), 5, true),
    p("1.010727", "Cấp giấy phép môi trường", "Môi trường", Partial, 5_000_000, Some(("Giấy phép môi trường", "GPMT")), Wd(30), 3, true),
    p("2.001827", "Xác nhận đăng ký kế hoạch bảo vệ môi trường", "Môi trường", Offline, 0, None, Wd(10), 3, true),
    p("1.003002", "Cấp giấy phép khai thác nước dưới đất", "Tài nguyên nước", Partial, 1_000_000, Some(("Giấy phép khai thác nước", "GPKTN")), Wd(30), 2, true),
];

/// Weight of a synthetic procedure (beyond an agency kind's listed ones): rarely used.
pub const SYNTHETIC_WEIGHT: u32 = 1;

/// Family names with rough frequencies (percent).
pub const FAMILY_NAMES: [(&str, u32); 16] = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 5),
    ("Huỳnh", 4),
    ("Phan", 4),
    ("Vũ", 4),
    ("Võ", 3),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 2),
    ("Hồ", 2),
    ("Ngô", 2),
    ("Dương", 2),
    ("Lý", 1),
];
pub const MALE_MIDDLE: [&str; 8] = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thanh", "Xuân", "Gia"];
pub const FEMALE_MIDDLE: [&str; 8] = [
    "Thị", "Ngọc", "Thu", "Minh", "Thanh", "Phương", "Hồng", "Bảo",
];
pub const MALE_GIVEN: [&str; 16] = [
    "An", "Bình", "Cường", "Dũng", "Hải", "Hiếu", "Hùng", "Huy", "Khoa", "Long", "Nam", "Phong",
    "Quân", "Sơn", "Trung", "Tuấn",
];
pub const FEMALE_GIVEN: [&str; 16] = [
    "Anh", "Châu", "Giang", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Ngân", "Nhung",
    "Phương", "Thảo", "Trang", "Yến",
];
/// Mobile prefixes (Viettel, Vinaphone, MobiFone).
pub const PHONE_PREFIXES: [&str; 12] = [
    "086", "096", "097", "098", "032", "035", "091", "094", "088", "090", "093", "070",
];

pub const STEPS: [&str; 3] = [
    "Kiểm tra, thẩm định hồ sơ",
    "Xác minh thông tin",
    "Trình lãnh đạo phê duyệt",
];
/// Who handles a step: the first steps a case officer, the last one the management.
pub const HANDLER_ROLES: [&str; 3] = ["Chuyên viên thụ lý", "Lãnh đạo phòng", "Lãnh đạo cơ quan"];

pub const STREETS: [&str; 10] = [
    "Lê Lợi",
    "Trần Hưng Đạo",
    "Nguyễn Huệ",
    "Hai Bà Trưng",
    "Lý Thường Kiệt",
    "Quang Trung",
    "Hùng Vương",
    "Phan Đình Phùng",
    "Nguyễn Trãi",
    "Lê Duẩn",
];

pub const REFUSAL_REASONS: [&str; 4] = [
    "Thành phần hồ sơ không đầy đủ theo quy định",
    "Hồ sơ không thuộc thẩm quyền giải quyết của cơ quan",
    "Thông tin kê khai không khớp với Cơ sở dữ liệu quốc gia về dân cư",
    "Hồ sơ nộp trùng với hồ sơ đang được giải quyết",
];
pub const SUPPLEMENT_REASONS: [&str; 4] = [
    "Bổ sung bản sao giấy tờ chứng minh nơi cư trú",
    "Bản chụp giấy tờ không rõ nét, đề nghị nộp lại bản rõ nét",
    "Bổ sung văn bản ủy quyền hợp lệ",
    "Điều chỉnh thông tin tờ khai cho khớp với giấy tờ tùy thân",
];
pub const WITHDRAWAL_REASONS: [&str; 3] = [
    "Người nộp hồ sơ đề nghị rút hồ sơ",
    "Người nộp hồ sơ đã nộp hồ sơ tại cơ quan khác",
    "Người nộp hồ sơ không còn nhu cầu giải quyết",
];
pub const STOP_REASONS: [&str; 3] = [
    "Quá thời hạn bổ sung hồ sơ theo yêu cầu",
    "Có văn bản đề nghị dừng xử lý của cơ quan có thẩm quyền",
    "Phát hiện giấy tờ trong hồ sơ có dấu hiệu giả mạo",
];
pub const EXTENSION_REASONS: [&str; 3] = [
    "Cần xác minh thêm thông tin tại cơ quan liên quan",
    "Chờ ý kiến phối hợp của cơ quan liên quan",
    "Số lượng hồ sơ tiếp nhận tăng đột biến",
];

/// Online payment channels with weights.
pub const ONLINE_GATEWAYS: [(&str, u32); 5] = [
    ("paygov", 40),
    ("vietqr", 25),
    ("napas", 15),
    ("vnpt_pay", 10),
    ("viettel_money", 10),
];
pub const OFFLINE_GATEWAYS: [(&str, u32); 2] = [("cash", 80), ("pos", 20)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procedure_codes_are_unique_within_an_agency_kind() {
        for kind in DEPARTMENTS.into_iter().chain([AgencyKind::Commune]) {
            let mut codes: Vec<&str> = kind.procedures().iter().map(|p| p.code).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), kind.procedures().len(), "{kind:?}");
        }
    }

    #[test]
    fn agency_codes_are_unique() {
        let units = socai_metrics::units();
        let mut codes: Vec<String> = units
            .provinces()
            .flat_map(|p| {
                let departments = DEPARTMENTS.into_iter().filter_map(|k| k.code(&p.code));
                let communes = units
                    .communes_of(&p.code)
                    .map(|c| c.agency.clone().unwrap());
                departments.chain(communes).collect::<Vec<_>>()
            })
            .collect();
        let count = codes.len();
        assert_eq!(count, 34 * DEPARTMENTS.len() + 3321);
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), count);
        assert!(codes.contains(&"000.00.12.H13".to_owned()));
        assert!(codes.contains(&"G09.20".to_owned()));
        assert!(codes.contains(&"000.01.01.H01".to_owned()));
        assert_eq!(AgencyKind::Commune.code("H01"), None);
    }
}

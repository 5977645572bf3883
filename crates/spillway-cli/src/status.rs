//! The classes HTTP statuses are reported under by `serve` and `load`: success, shed (503) and
//! everything else.

/// A class of response statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StatusClass {
    /// 2xx.
    Ok,
    /// 503: shed for lack of room.
    Shed,
    /// Any other status.
    Other,
}

impl StatusClass {
    /// Every class, in report order.
    pub(crate) const ALL: [StatusClass; 3] =
        [StatusClass::Ok, StatusClass::Shed, StatusClass::Other];

    /// The class of `status`.
    pub(crate) fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Ok,
            503 => StatusClass::Shed,
            _ => StatusClass::Other,
        }
    }

    /// The class's name in reports and labels: `2xx`, `503` or `other`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StatusClass::Ok => "2xx",
            StatusClass::Shed => "503",
            StatusClass::Other => "other",
        }
    }

    /// The class's index in [`ALL`](Self::ALL), for arrays of per-class counts.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_three_classes() {
        for (status, class) in [
            (200, "2xx"),
            (204, "2xx"),
            (299, "2xx"),
            (503, "503"),
            (500, "other"),
            (404, "other"),
            (302, "other"),
            (413, "other"),
        ] {
            assert_eq!(StatusClass::of(status).name(), class, "{status}");
        }
        for (i, class) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}

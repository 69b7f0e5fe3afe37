//! Figures: percentiles of one run, and the median and spread of a figure
//! over several runs.

/// Percentile `p` (0..=100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A figure measured in several runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figure {
    /// One value per run.
    pub runs: Vec<f64>,
}

impl Figure {
    /// Adds a run's value.
    pub fn push(&mut self, value: f64) {
        self.runs.push(value);
    }

    /// The median of the runs.
    pub fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// `min–max` of the runs.
    pub fn spread(&self) -> (f64, f64) {
        let min = self.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 99.9), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
        let f = Figure {
            runs: vec![3.0, 1.0, 2.0, 10.0],
        };
        assert_eq!(f.median(), 2.5);
        assert_eq!(f.spread(), (1.0, 10.0));
    }
}

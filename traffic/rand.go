package traffic

import "math"

// rng is a small deterministic generator (SplitMix64). The generator draws
// tens of random numbers per event, so it avoids the interface call of
// math/rand; the output only has to be reproducible for a seed, not
// cryptographically strong.
type rng struct{ s uint64 }

func newRNG(seed uint64, stream uint64) *rng {
	r := &rng{s: seed*0x9e3779b97f4a7c15 ^ (stream+1)*0xbf58476d1ce4e5b9}
	r.u64()
	return r
}

func (r *rng) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a number in [0, 1).
func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

// intn returns a number in [0, n); n must be positive.
func (r *rng) intn(n int) int { return int((r.u64() >> 1) % uint64(n)) }

// between returns a number in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.float() < p }

// norm returns a standard normal deviate (Box–Muller; one of the pair is
// thrown away, which keeps the state simple).
func (r *rng) norm() float64 {
	u := r.float()
	for u == 0 {
		u = r.float()
	}
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float())
}

// lognormal returns a value whose logarithm is normal, given its median.
func (r *rng) lognormal(median, sigma float64) float64 {
	return median * math.Exp(sigma*r.norm())
}

// poisson draws a Poisson count with mean lambda.
func (r *rng) poisson(lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda < 30 {
		l := math.Exp(-lambda)
		k, p := 0, r.float()
		for p > l {
			k++
			p *= r.float()
		}
		return k
	}
	n := int(math.Round(lambda + math.Sqrt(lambda)*r.norm()))
	if n < 0 {
		return 0
	}
	return n
}

// pick returns one element of a non-empty slice.
func pick[T any](r *rng, s []T) T { return s[r.intn(len(s))] }

// weighted picks an index with probability proportional to its weight,
// by binary search over cumulative weights (cum[i] = w[0]+…+w[i]).
func weighted(r *rng, cum []float64) int {
	if len(cum) == 0 {
		return -1
	}
	x := r.float() * cum[len(cum)-1]
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

func cumulative(w []float64) []float64 {
	c := make([]float64, len(w))
	var s float64
	for i, x := range w {
		s += x
		c[i] = s
	}
	return c
}

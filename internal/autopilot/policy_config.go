package autopilot

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultTargetRPS        = 1000.0
	DefaultMaxReplicas      = 8
	DefaultReplicaTTL       = 30 * time.Second
	DefaultCooldown         = 5 * time.Second
	DefaultScaleInHold      = 10 * time.Second
	DefaultMinInterval      = 500 * time.Millisecond
	DefaultHighWatermark    = 1.0
	DefaultLowWatermark     = 0.5
	DefaultBudgetPerSecond  = 10.0
	DefaultMaxExtraReplicas = 64
	DefaultReportMaxAge     = 2 * time.Second
	DefaultActuationTimeout = 5 * time.Second
)

// renewFraction is the share of ReplicaTTL left at which a lease is renewed.
const renewFraction = 0.25

// Config holds the autopilot's thresholds. Zero fields mean the documented
// defaults (so a zero Config is valid); negative values are errors.
type Config struct {
	// TargetRPS is the request rate one member of a replica set (owner or
	// replica) should serve: a key wants ceil(rate/TargetRPS) members.
	// Flag --replica-target-rps; zero means 1000.
	TargetRPS float64

	// MaxReplicas caps the members per object, owner included.
	// Flag --max-replicas; zero means 8.
	MaxReplicas int

	// ReplicaTTL is the TTL of a replica's lease. A replica is renewed when
	// less than 25% of it is left. Flag --replica-ttl; zero means 30s.
	ReplicaTTL time.Duration

	// Cooldown is the least time between a scaling action on a key and an
	// action on it in the other direction, and between any action and a
	// scale-in. Flag --scale-cooldown; zero means 5s.
	Cooldown time.Duration

	// ScaleInHold is how long a key's rate must stay below the low
	// watermark before its replicas are released.
	// Flag --scale-in-hold; zero means 10s.
	ScaleInHold time.Duration

	// MinInterval is the least time between two scale-outs of one key, so
	// a key follows a growing crowd in steps of at most one per interval.
	// A scale-out cut short by the budget or the caps may be completed
	// sooner. Short, since the decayed rate lags a step: the first
	// decision sees part of the crowd, and the rest must follow quickly
	// (replicas still being set up count as members, so a step never
	// doubles up). Flag --scale-out-interval; zero means 500ms.
	MinInterval time.Duration

	// HighWatermark and LowWatermark are the hysteresis band, as fractions
	// of TargetRPS per member. A key with m members scales out when its
	// rate exceeds m·TargetRPS·HighWatermark, and scales in when its rate
	// stays below (m−1)·TargetRPS·LowWatermark for ScaleInHold. Zero means
	// 1.0 and 0.5; LowWatermark must be below HighWatermark.
	HighWatermark, LowWatermark float64

	// BudgetPerSecond is the cluster-wide rate of new replicas, a token
	// bucket with a burst of max(1, BudgetPerSecond). Zero means 10.
	BudgetPerSecond float64

	// MaxExtraReplicas caps the replicas (owners excluded) over all
	// objects, counting those being set up but not those released and
	// waiting for their lease to lapse. Zero means 64.
	MaxExtraReplicas int

	// P99Objective and ErrorObjective, when positive, raise a hot key's
	// replica count one step at a time while any member's node reports a
	// p99 latency or error rate above them. Zero disables each.
	P99Objective   time.Duration
	ErrorObjective float64

	// ReportMaxAge is the age past which a heat report is ignored.
	// Zero means 2s.
	ReportMaxAge time.Duration

	// ActuationTimeout is how long a replica the policy asked for, but
	// which has not yet appeared in the objects passed to Decide, still
	// counts as a member (the actuator is granting, copying, registering).
	// After it, the policy assumes the scale-out failed. Zero means 5s.
	ActuationTimeout time.Duration
}

// DefaultConfig returns the Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		TargetRPS:        DefaultTargetRPS,
		MaxReplicas:      DefaultMaxReplicas,
		ReplicaTTL:       DefaultReplicaTTL,
		Cooldown:         DefaultCooldown,
		ScaleInHold:      DefaultScaleInHold,
		MinInterval:      DefaultMinInterval,
		HighWatermark:    DefaultHighWatermark,
		LowWatermark:     DefaultLowWatermark,
		BudgetPerSecond:  DefaultBudgetPerSecond,
		MaxExtraReplicas: DefaultMaxExtraReplicas,
		ReportMaxAge:     DefaultReportMaxAge,
		ActuationTimeout: DefaultActuationTimeout,
	}
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.TargetRPS, d.TargetRPS)
	setDefault(&c.MaxReplicas, d.MaxReplicas)
	setDefault(&c.ReplicaTTL, d.ReplicaTTL)
	setDefault(&c.Cooldown, d.Cooldown)
	setDefault(&c.ScaleInHold, d.ScaleInHold)
	setDefault(&c.MinInterval, d.MinInterval)
	setDefault(&c.HighWatermark, d.HighWatermark)
	setDefault(&c.LowWatermark, d.LowWatermark)
	setDefault(&c.BudgetPerSecond, d.BudgetPerSecond)
	setDefault(&c.MaxExtraReplicas, d.MaxExtraReplicas)
	setDefault(&c.ReportMaxAge, d.ReportMaxAge)
	setDefault(&c.ActuationTimeout, d.ActuationTimeout)
	return c
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate reports whether c, with defaults for its zero fields, is usable:
// every value in range and the watermarks ordered.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.TargetRPS > 0, "replica target rps %g must be > 0", c.TargetRPS)
	check(c.MaxReplicas >= 1, "max replicas %d must be >= 1 (the owner)", c.MaxReplicas)
	check(c.ReplicaTTL > 0, "replica ttl %v must be > 0", c.ReplicaTTL)
	check(c.Cooldown >= 0, "scale cooldown %v must be >= 0", c.Cooldown)
	check(c.ScaleInHold >= 0, "scale-in hold %v must be >= 0", c.ScaleInHold)
	check(c.MinInterval >= 0, "min interval %v must be >= 0", c.MinInterval)
	check(c.LowWatermark > 0, "low watermark %g must be > 0", c.LowWatermark)
	check(c.LowWatermark < c.HighWatermark, "low watermark %g must be below high watermark %g", c.LowWatermark, c.HighWatermark)
	check(c.BudgetPerSecond > 0, "budget %g replicas/s must be > 0", c.BudgetPerSecond)
	check(c.MaxExtraReplicas >= 0, "max extra replicas %d must be >= 0", c.MaxExtraReplicas)
	check(c.P99Objective >= 0, "p99 objective %v must be >= 0", c.P99Objective)
	check(c.ErrorObjective >= 0 && c.ErrorObjective < 1, "error objective %g must be in [0, 1)", c.ErrorObjective)
	check(c.ReportMaxAge > 0, "report max age %v must be > 0", c.ReportMaxAge)
	check(c.ReportMaxAge < c.ReplicaTTL, "report max age %v must be below replica ttl %v", c.ReportMaxAge, c.ReplicaTTL)
	check(c.ActuationTimeout > 0, "actuation timeout %v must be > 0", c.ActuationTimeout)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("autopilot config: %w", err)
	}
	return nil
}

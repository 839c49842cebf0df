package cluster

import (
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// orDiscard returns l, or a logger that drops everything when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// quietZap is the logger handed to etcd's own code (server and client): it
// writes errors only, to stderr, so etcd's chatter stays out of crowdpilot's
// log stream.
func quietZap() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	lg, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return lg
}

// mutedZap is quietZap that drops everything once mute is set. The embedded
// server logs its listeners closing as errors; Close sets mute first.
func mutedZap(mute *atomic.Bool) *zap.Logger {
	return quietZap().WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return muteCore{Core: c, mute: mute}
	}))
}

type muteCore struct {
	zapcore.Core
	mute *atomic.Bool
}

func (c muteCore) With(fields []zapcore.Field) zapcore.Core {
	return muteCore{Core: c.Core.With(fields), mute: c.mute}
}

func (c muteCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.mute.Load() {
		return ce
	}
	return c.Core.Check(ent, ce)
}

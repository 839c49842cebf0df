package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// MaxBodyBytes bounds the body of a purge request; larger bodies get 413.
const MaxBodyBytes = 16 << 10

// appendTimeout bounds the commit of a purge: with etcd unreachable the
// caller gets 503 instead of a hang.
const appendTimeout = 5 * time.Second

// Response is the JSON body of a successful POST /api/v1/purge.
type Response struct {
	Rev   int64  `json:"rev"`
	Kind  Kind   `json:"kind"`
	Value string `json:"value"`
	Soft  bool   `json:"soft"`
	// Complete is true when every live node had applied the purge when the
	// response was written. Without wait it reflects a single look taken
	// right after the commit, so it is usually false.
	Complete bool     `json:"complete"`
	Applied  []string `json:"applied"` // IDs of nodes that have applied it
	Pending  []string `json:"pending"` // IDs of live nodes that have not
}

// handler serves POST /api/v1/purge.
type handler struct {
	log     *Log
	members func() []cluster.Member
	logger  *slog.Logger
}

var _ http.Handler = (*handler)(nil)

// NewHandler returns the handler of POST /api/v1/purge. Authentication is
// the caller's middleware; the handler validates the body, appends the purge
// and, with "wait", waits (WaitApplied over members) until every live node
// has applied it.
//
// Answers: 200 with a Response when committed and, if wait was asked,
// applied everywhere; 202 with a Response listing the pending nodes when
// wait passed first; 400 (malformed or invalid body), 405 and 413 (body
// over MaxBodyBytes) with {"error": "..."} and nothing appended; 503 with {"error": "..."} when the log could not be written.
//
// l and members are required; logger may be nil.
func NewHandler(l *Log, members func() []cluster.Member, logger *slog.Logger) http.Handler {
	if l == nil || members == nil {
		panic("purge.NewHandler: nil Log or members")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &handler{log: l, members: members, logger: logger}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST with a JSON body")
		return
	}
	// The body must be JSON whatever Content-Type says: `curl -d` labels
	// it as a form, and strict decoding is the check that matters.
	req, status, err := decodeRequest(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}

	actx, cancel := context.WithTimeout(r.Context(), appendTimeout)
	e, err := h.log.Append(actx, req)
	cancel()
	if err != nil {
		h.logger.Error("purge: append failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "purge not committed: "+err.Error())
		return
	}

	var applied, pending []string
	if req.Wait > 0 {
		wctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.Wait))
		applied, pending = WaitApplied(wctx, e.Rev, h.members)
		cancel()
	} else {
		applied, pending = splitApplied(h.members(), e.Rev)
	}
	resp := Response{Rev: e.Rev, Kind: e.Kind, Value: e.Value, Soft: e.Soft,
		Complete: len(pending) == 0, Applied: applied, Pending: pending}
	status = http.StatusOK
	if req.Wait > 0 && !resp.Complete {
		status = http.StatusAccepted
	}
	h.logger.Info("purge committed", "rev", e.Rev, "kind", e.Kind, "value", e.Value, "soft", e.Soft,
		"wait", time.Duration(req.Wait), "applied", len(applied), "pending", pending)
	writeJSON(w, status, resp)
}

// decodeRequest reads and validates the body; on failure it returns the
// status to answer with and an error worded for the client.
func decodeRequest(w http.ResponseWriter, r *http.Request) (Request, int, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	var req Request
	err := dec.Decode(&req)
	if err == nil {
		// Exactly one JSON value: anything after it is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
			if terr != nil {
				err = terr
			}
		}
	}
	var tooBig *http.MaxBytesError
	var badType *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return Request{}, http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return Request{}, http.StatusBadRequest, errors.New(`empty body: expected a JSON object such as {"tag": "match-1234", "wait": "2s"}`)
	case errors.As(err, &badType) && badType.Field == "":
		return Request{}, http.StatusBadRequest, fmt.Errorf("body must be a JSON object, not %s", badType.Value)
	case errors.As(err, &badType):
		return Request{}, http.StatusBadRequest, fmt.Errorf("%q must be a JSON %s, not %s", badType.Field, jsonType(badType.Type.Kind()), badType.Value)
	case err != nil:
		return Request{}, http.StatusBadRequest, fmt.Errorf("malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if err := req.Validate(); err != nil {
		return Request{}, http.StatusBadRequest, err
	}
	return req, 0, nil
}

// jsonType names the JSON type a Request field takes.
func jsonType(k reflect.Kind) string {
	if k == reflect.Bool {
		return "boolean"
	}
	return "string"
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

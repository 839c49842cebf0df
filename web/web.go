// Package web is the operator dashboard: static HTML, CSS and JavaScript
// embedded in the binary, with a vendored copy of uPlot for the charts.
// The page reads the admin JSON API of the node that serves it and
// fetches nothing from anywhere else.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed index.html app.js app.css vendor/uPlot.iife.min.js vendor/uPlot.min.css
var assets embed.FS

// CSP is the Content-Security-Policy of every dashboard response: scripts,
// styles, images and API calls from the serving origin only, no inline
// script, no framing.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Assets is the embedded file tree (index.html at its root).
func Assets() fs.FS { return assets }

// Handler serves the dashboard assets at the root of the paths it gets (mount
// it under a prefix with http.StripPrefix), with the CSP header and no
// caching by intermediaries of the HTML.
func Handler() http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

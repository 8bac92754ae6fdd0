package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// assets are the static files the login pages use, embedded in the binary
// (no third-party origin): the ALTCHA proof-of-work widget, vendored from
// npm with its licence (assets/altcha/VERSION says which build).
//
//go:embed assets
var assets embed.FS

// assetHandler serves GET /assets/…, cacheable for a day (the files change
// only with the binary).
func assetHandler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/assets/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

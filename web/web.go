// Package web is the browser page of the shop, embedded into the orders
// binary so that running the shop needs nothing but Go. Its script,
// static/app.js, is built from src/ by esbuild (npm run build) and committed.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var static embed.FS

// Handler serves the page and its assets. Files get their content type from
// their extension and a strong ETag from their content; browsers revalidate
// on every load ("no-cache") and get 304 Not Modified until the binary
// changes. Embedded files have no modification time to do this with.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := make(map[string]string)
	err = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+name] = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		panic(err)
	}
	etags["/"] = etags["/index.html"]
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if etag, ok := etags[path.Clean(r.URL.Path)]; ok {
			w.Header().Set("ETag", etag) // http.ServeContent answers If-None-Match with it
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fileServer.ServeHTTP(w, r)
	})
}

// trivydb writes a Trivy vulnerability database from YAML fixtures, the way Trivy's own tests do
// (internal/dbtest.InitDB): the fixtures are loaded into BoltDB with bolt-fixtures, and
// metadata.json declares the schema version this trivy-db expects, with NextUpdate far in the
// future so that `trivy --skip-db-update` uses it as it is.
//
// Usage: trivydb --fixtures DIR --cache-dir DIR
//
// Every *.yaml and *.yml file in --fixtures is loaded. The database is written to
// CACHE/db/trivy.db and CACHE/db/metadata.json, where `trivy --cache-dir CACHE` looks for it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
)

func main() {
	fixturesDir := flag.String("fixtures", "", "directory of YAML fixture files (bolt-fixtures format)")
	cacheDir := flag.String("cache-dir", "", "Trivy cache directory; the database goes to its db/ subdirectory")
	flag.Parse()
	if *fixturesDir == "" || *cacheDir == "" {
		fmt.Fprintln(os.Stderr, "usage: trivydb --fixtures DIR --cache-dir DIR")
		os.Exit(2)
	}
	if err := run(*fixturesDir, *cacheDir); err != nil {
		fmt.Fprintf(os.Stderr, "trivydb: %v\n", err)
		os.Exit(1)
	}
}

func run(fixturesDir, cacheDir string) error {
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		matches, err := filepath.Glob(filepath.Join(fixturesDir, pattern))
		if err != nil {
			return err
		}
		files = append(files, matches...)
	}
	if len(files) == 0 {
		return fmt.Errorf("no *.yaml fixtures in %s", fixturesDir)
	}
	sort.Strings(files)

	dbDir := filepath.Join(cacheDir, "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		return err
	}
	dbPath := trivydb.Path(dbDir)
	if err := os.Remove(dbPath); err != nil && !os.IsNotExist(err) {
		return err
	}
	loader, err := fixtures.New(dbPath, files)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dbPath, err)
	}
	if err := loader.Load(); err != nil {
		loader.Close()
		return fmt.Errorf("loading fixtures: %w", err)
	}
	if err := loader.Close(); err != nil {
		return err
	}

	now := time.Now().UTC()
	meta := metadata.Metadata{
		Version:      trivydb.SchemaVersion,
		NextUpdate:   time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC),
		UpdatedAt:    now,
		DownloadedAt: now,
	}
	if err := metadata.NewClient(dbDir).Update(meta); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}
	fmt.Printf("wrote %s (schema %d) from %d fixture files\n", dbPath, trivydb.SchemaVersion, len(files))
	return nil
}

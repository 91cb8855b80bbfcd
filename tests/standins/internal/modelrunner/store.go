package modelrunner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Model is one model on disk.
type Model struct {
	Name    string
	Created time.Time
}

// Store keeps models as MODELS_PATH/models/<sha256 of name>/model.json, so
// what was pulled survives a restart when MODELS_PATH is a volume.
type Store struct {
	root  string
	delay time.Duration
	mu    sync.Mutex // serialises pulls
}

// NewStore returns a store under root whose pulls take delay.
func NewStore(root string, delay time.Duration) *Store {
	return &Store{root: root, delay: delay}
}

type record struct {
	ID string `json:"id"`
}

func (s *Store) file(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(s.root, "models", hex.EncodeToString(sum[:]), "model.json")
}

// Get reports whether the model is on disk.
func (s *Store) Get(name string) (Model, bool) {
	fi, err := os.Stat(s.file(name))
	if err != nil || !fi.Mode().IsRegular() {
		return Model{}, false
	}
	return Model{Name: name, Created: fi.ModTime()}, true
}

// List returns the models on disk, sorted by name. A missing directory is an
// empty list; unreadable entries are skipped.
func (s *Store) List() ([]Model, error) {
	dirs, err := os.ReadDir(filepath.Join(s.root, "models"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var models []Model
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(s.root, "models", d.Name(), "model.json"))
		if err != nil {
			continue
		}
		var rec record
		if json.Unmarshal(data, &rec) != nil || rec.ID == "" {
			continue
		}
		if m, ok := s.Get(rec.ID); ok {
			models = append(models, m)
		}
	}
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	return models, nil
}

// Pull puts the model on disk unless it is there already. It returns whether
// it pulled. A pull takes the store's delay; ctx cancels it.
func (s *Store) Pull(ctx context.Context, name string) (bool, error) {
	if _, ok := s.Get(name); ok {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(name); ok { // pulled while we waited for the lock
		return false, nil
	}
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false, fmt.Errorf("pull cancelled: %w", ctx.Err())
		}
	}
	return true, s.write(name)
}

// write creates the model file atomically (temporary file, then rename).
func (s *Store) write(name string) error {
	path := s.file(name)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(record{ID: name})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".model-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

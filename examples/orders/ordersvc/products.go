package ordersvc

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
)

// Product is the JSON form of a product.
type Product struct {
	SKU     string `json:"sku"`
	Name    string `json:"name"`
	Stock   int    `json:"stock"`
	Version int64  `json:"version"`
}

// Seed creates the product or resets its name and stock.
func (s *Service) Seed(ctx context.Context, sku, name string, stock int) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO products (sku, name, stock) VALUES ($1, $2, $3)
		ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, stock = EXCLUDED.stock,
			version = products.version + 1, updated_at = now()`, sku, name, stock)
	return err
}

func (s *Service) getProduct(w http.ResponseWriter, r *http.Request) {
	if !storable(r.PathValue("sku")) { // no such text in PostgreSQL, so no such product
		problem(w, http.StatusNotFound, ProblemNotFound, "No such product", "")
		return
	}
	var p Product
	err := s.pool.QueryRow(r.Context(), `SELECT sku, name, stock, version FROM products WHERE sku = $1`, r.PathValue("sku")).
		Scan(&p.SKU, &p.Name, &p.Stock, &p.Version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		problem(w, http.StatusNotFound, ProblemNotFound, "No such product", "")
	case err != nil:
		s.log.ErrorContext(r.Context(), "get product", "error", err)
		problem(w, http.StatusInternalServerError, "about:blank", "Internal error", "")
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"postgres": "ok"}
	code := http.StatusOK
	if err := s.pool.Ping(ctx); err != nil {
		status["postgres"] = err.Error()
		code = http.StatusServiceUnavailable
	}
	if s.redis != nil {
		// Redis is advisory: when it is down the service still answers through PostgreSQL,
		// so report it without failing the check.
		status["redis"] = "ok"
		if err := s.redis.Ping(ctx).Err(); err != nil {
			status["redis"] = "unavailable (serving through PostgreSQL): " + err.Error()
		}
	}
	writeJSON(w, code, status)
}

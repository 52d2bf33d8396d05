package orders

// Watchers returns how many WatchOrders streams s serves now.
func Watchers(s *Server) int { return s.svc.hub.count() }

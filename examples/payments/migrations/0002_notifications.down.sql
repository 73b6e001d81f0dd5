DROP TABLE IF EXISTS notification_arrivals;
DROP TABLE IF EXISTS notifications;

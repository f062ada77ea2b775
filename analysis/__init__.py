"""Run records -> pandas -> the paper's tables and figures. Reads run records; never imports the trainer."""

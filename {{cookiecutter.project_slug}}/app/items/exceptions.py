from app.core.errors import NotFound


class ItemNotFound(NotFound):
    code = "item_not_found"
    message = "The item does not exist."

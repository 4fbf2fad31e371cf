"""The method recipes: one short module each, the TRL config and trainer plus the traits the library reads.

`make new-recipe from=dpo name=my_dpo` copies one; `method.recipe=recipes.my_dpo` (conf/method/*.yaml) trains it.
"""
